"""The variants: the same app with no sessions, with each peer, and with ours."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as CookieSessionMiddleware
from starlette.requests import Request
from starsessions import SessionMiddleware as StarSessionMiddleware
from starsessions import load_session, regenerate_session_id
from starsessions.stores.redis import RedisStore

from session_middleware import get_session, sessions

from . import sql
from .app import CART, COUNTER, THEME, build_app
from .settings import REDIS_URL, SECRET, SESSION_LIFETIME

ORDER = (
    "floor",
    "starlette",
    "starsessions",
    "ours-redis",
    "ours-redispy",
    "ours-sql",
    "ours-cache",
)
LABELS = {
    "floor": "no session (floor)",
    "starlette": "Starlette cookie SessionMiddleware",
    "starsessions": "starsessions 2.2.1 + RedisStore",
    "ours-redis": "session_middleware, Redis epochs",
    "ours-redispy": "session_middleware, Redis epochs, redis_multiplex=False",
    "ours-sql": "session_middleware, SQL epochs",
    "ours-cache": "session_middleware, Redis epochs + local_cache",
}
CACHE_ENTRIES = 10_000  # local_cache= of the ours-cache variant
COOKIE = "session"


@dataclass
class Variant:
    key: str
    app: Any
    uses_redis: bool
    invalidate: Callable[[str], Awaitable[None]] | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    config: Any = None
    cached: bool = False  # reads go through local_cache: config.redis.async_().cache
    sql_engine: Any = None  # the SQLAlchemy engine of SQL epochs, to count queries

    @property
    def label(self) -> str:
        return LABELS[self.key]

    def cache(self) -> Any:
        """The local cache of this event loop (ours-cache only): .entries, .hits, .healthy."""
        if not self.cached:
            raise ValueError(f"{self.key} has no local cache")
        return self.config.redis.async_().cache

    async def close(self) -> None:
        for closer in self.closers:
            await closer()


class Unavailable(RuntimeError):
    """This variant cannot run here; the message says why."""


# -- how each variant's routes reach the session ------------------------------------


class NoSession:
    async def read(self, request: Request) -> str:
        return "None:None"

    async def write(self, request: Request) -> str:
        return "0"

    async def login(self, request: Request, user_id: str) -> None:
        return None

    async def increment(self, request: Request, key: str) -> str:
        return "0"

    async def counters(self, request: Request) -> dict[str, int]:
        return {}


class StarletteAccess:
    """Starlette's cookie sessions: request.session, a plain dict."""

    async def read(self, request: Request) -> str:
        session = request.session
        return f"{session.get('user_id')}:{session.get('theme')}"

    async def write(self, request: Request) -> str:
        session = request.session
        session["visits"] = session.get("visits", 0) + 1
        return str(session["visits"])

    async def login(self, request: Request, user_id: str) -> None:
        session = request.session
        session.clear()
        session.update(user_id=user_id, theme=THEME, cart=CART)

    async def increment(self, request: Request, key: str) -> str:
        session = request.session
        session[key] = session.get(key, 0) + 1
        return str(session[key])

    async def counters(self, request: Request) -> dict[str, int]:
        return {k: v for k, v in request.session.items() if k.startswith(COUNTER)}


class StarsessionsAccess(StarletteAccess):
    """starsessions: load_session() first (its docs' way), then request.session."""

    async def read(self, request: Request) -> str:
        await load_session(request)
        return await super().read(request)

    async def write(self, request: Request) -> str:
        await load_session(request)
        return await super().write(request)

    async def login(self, request: Request, user_id: str) -> None:
        await load_session(request)
        regenerate_session_id(request)
        await super().login(request, user_id)

    async def increment(self, request: Request, key: str) -> str:
        await load_session(request)
        return await super().increment(request, key)

    async def counters(self, request: Request) -> dict[str, int]:
        await load_session(request)
        return await super().counters(request)


class OurAccess:
    """session_middleware: get_session(request), login() binds the user."""

    async def read(self, request: Request) -> str:
        session = get_session(request)
        return f"{session.user_id}:{session.get('theme')}"

    async def write(self, request: Request) -> str:
        session = get_session(request)
        session["visits"] = session.get("visits", 0) + 1
        return str(session["visits"])

    async def login(self, request: Request, user_id: str) -> None:
        session = get_session(request)
        session.login(user_id)
        session["theme"] = THEME
        session["cart"] = CART

    async def increment(self, request: Request, key: str) -> str:
        session = get_session(request)
        session[key] = session.get(key, 0) + 1
        return str(session[key])

    async def counters(self, request: Request) -> dict[str, int]:
        session = get_session(request)
        return {k: v for k, v in session.items() if k.startswith(COUNTER)}


# -- building them ----------------------------------------------------------------


def build(key: str, prefix: str, client: redis.asyncio.Redis | None = None) -> Variant:
    """The variant `key`, its Redis keys under `prefix`.

    `client` replaces the Redis client the variant would build from REDIS_URL (to count
    commands); the variant then does not close it. ours-cache takes none: local_cache opens
    connections of its own from the URL (counting.counting_connections counts those).
    """
    if key == "floor":
        return Variant(key, build_app(NoSession()), uses_redis=False)
    if key == "starlette":
        middleware = Middleware(
            CookieSessionMiddleware,
            secret_key=SECRET,
            session_cookie=COOKIE,
            max_age=SESSION_LIFETIME,
            https_only=False,
        )
        return Variant(key, build_app(StarletteAccess(), [middleware]), uses_redis=False)
    if key == "starsessions":
        return _starsessions(prefix, client)
    if key == "ours-redis":
        return _ours(key, prefix, client, epochs=None)
    if key == "ours-redispy":  # redis-py's pool instead of the multiplexed connection
        return _ours(key, prefix, client, epochs=None, redis_multiplex=False)
    if key == "ours-sql":
        return _ours(key, prefix, client, epochs=sql.provider(prefix))
    if key == "ours-cache":
        if client is not None:
            raise ValueError("ours-cache opens its own tracking connections: it takes no client")
        return _ours(key, prefix, None, epochs=None, local_cache=CACHE_ENTRIES)
    raise ValueError(f"unknown variant {key!r}")


def _starsessions(prefix: str, client: redis.asyncio.Redis | None) -> Variant:
    connection = redis.asyncio.Redis.from_url(REDIS_URL) if client is None else client
    store = RedisStore(connection=connection, prefix=f"{prefix}starsessions:")
    middleware = Middleware(
        StarSessionMiddleware,
        store=store,
        lifetime=SESSION_LIFETIME,
        cookie_name=COOKIE,
        cookie_https_only=False,
    )
    variant = Variant("starsessions", build_app(StarsessionsAccess(), [middleware]), True)
    if client is None:
        variant.closers.append(connection.aclose)
    return variant


def _ours(
    key: str,
    prefix: str,
    client: redis.asyncio.Redis | None,
    epochs: Any,
    local_cache: int | None = None,
    redis_multiplex: bool = True,
) -> Variant:
    where: dict[str, Any] = {"redis_url": REDIS_URL} if client is None else {"redis": client}
    where["redis_multiplex"] = redis_multiplex
    if local_cache is not None:
        where["local_cache"] = local_cache
    config = sessions(
        secret_key=SECRET,
        key_prefix=f"{prefix}{key}:",
        session_cookie=COOKIE,
        max_age=SESSION_LIFETIME,
        epochs=epochs,
        **where,
    )
    variant = Variant(key, config(build_app(OurAccess())), True, config.ainvalidate_user)
    variant.config = config
    variant.cached = local_cache is not None
    if variant.cached:
        variant.closers.append(config.aclose)  # the cache: its listener and tracking pool
    elif client is None:
        variant.closers.append(config.redis.aclose)
    if epochs is not None:
        variant.sql_engine = epochs.engine
        variant.closers.append(lambda: sql.close(epochs))
    return variant


def available(key: str) -> str | None:
    """None if the variant can run here, else why not."""
    if key == "ours-sql":
        return sql.unavailable()
    return None
