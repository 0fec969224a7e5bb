"""The variants: one tiny Starlette app with no sessions, with each peer, and with ours.

What differs between variants is only how a route reaches the session, so the app, its
routing and its responses cost the same everywhere, the floor included.
``python -m benchmarks.variants KEY PORT PREFIX LOOP WORKERS`` serves one under uvicorn.
"""

from __future__ import annotations

import gc
import itertools
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as CookieSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starsessions import SessionMiddleware as StarSessionMiddleware
from starsessions import load_session, regenerate_session_id
from starsessions.stores.redis import RedisStore

from session_middleware import get_session, sessions

from . import sql
from .common import COOKIE, REDIS_URL, SECRET, SESSION_LIFETIME

COLLECTOR_VARIABLE = "SMBENCH_GC"
COLLECTOR_SETTINGS = ("default", "freeze", "2000", "freeze-2000")

LABELS = {
    "floor": "no session (floor)",
    "floor-redis": "no session, one bare redis.asyncio GET per request that reads one",
    "starlette": "Starlette cookie SessionMiddleware",
    "starsessions": "starsessions 2.2.1 + RedisStore",
    "ours-redis": "session_middleware, Redis epochs",
    "ours-redispy": "session_middleware, Redis epochs, redis_multiplex=False",
    "ours-sql": "session_middleware, SQL epochs",
    "ours-cache": "session_middleware, Redis epochs + local_cache",
}
ORDER = tuple(LABELS)
COUNTER = "n:"  # the session keys of /count/{slot}: n:shared, n:0, n:1...
MAX_SESSION_BYTES = 256 * 1024  # room for the 100 KB session (the default is 64 KB)
RECORD_BYTES = 160  # a logged-in record's fields and values


def _sized(size: int) -> list[dict[str, object]]:
    """About `size` bytes of JSON: a list of small objects, as a cart or a form would hold."""
    return [{"id": n, "name": f"item {n}", "qty": 2, "price": 9.5} for n in range(size // 50)]


class Access:
    """Starlette's cookie sessions (request.session, a plain dict); the base of the others."""

    async def session(self, request: Request) -> Any:
        return request.session

    async def login(self, request: Request, user_id: str) -> None:
        session = await self.session(request)
        session.clear()
        session.update(user_id=user_id, theme="dark", cart=[101, 202, 303])

    async def user(self, request: Request) -> Any:
        return (await self.session(request)).get("user_id")


class NoSession(Access):
    async def session(self, request: Request) -> Any:
        return {}


class OneRedisGet(Access):
    """No session middleware: reaching the session is one bare `redis.asyncio` GET of a
    string as long as a logged-in record, and a dict of the read's theme (the floor of a
    request served with one Redis round trip). `getex`: GETEX instead, GET's twin under a
    name of its own in INFO commandstats."""

    def __init__(self, connection: redis.asyncio.Redis, key: str, getex: bool = False) -> None:
        self.read = connection.getex if getex else connection.get
        self.key = key

    async def session(self, request: Request) -> Any:
        await self.read(self.key)
        return {"theme": "dark"}

    async def user(self, request: Request) -> Any:
        return "floor-redis"


class StarsessionsAccess(Access):
    """starsessions: load_session() first (its docs' way); login regenerates the id."""

    async def session(self, request: Request) -> Any:
        await load_session(request)
        return request.session

    async def login(self, request: Request, user_id: str) -> None:
        await load_session(request)
        regenerate_session_id(request)
        await super().login(request, user_id)


class OurAccess(Access):
    async def session(self, request: Request) -> Any:
        return get_session(request)

    async def login(self, request: Request, user_id: str) -> None:
        session = get_session(request)
        session.login(user_id)
        session.update(theme="dark", cart=[101, 202, 303])

    async def user(self, request: Request) -> Any:
        return get_session(request).user_id


def build_app(access: Access, middleware: list[Middleware]) -> Starlette:
    users = itertools.count()

    async def anonymous(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def read(request: Request) -> PlainTextResponse:
        session = await access.session(request)
        return PlainTextResponse(f"{await access.user(request)}:{session.get('theme')}")

    async def write(request: Request) -> PlainTextResponse:
        session = await access.session(request)
        session["visits"] = session.get("visits", 0) + 1
        return PlainTextResponse(str(session["visits"]))

    async def login(request: Request) -> PlainTextResponse:
        user_id = request.query_params.get("user") or f"user-{next(users) % 1000}"
        await access.login(request, user_id)
        return PlainTextResponse(user_id)

    async def count(request: Request) -> PlainTextResponse:
        session, key = await access.session(request), COUNTER + request.path_params["slot"]
        session[key] = session.get(key, 0) + 1
        return PlainTextResponse(str(session[key]))

    async def counters(request: Request) -> JSONResponse:
        session = await access.session(request)
        return JSONResponse({k: v for k, v in session.items() if k.startswith(COUNTER)})

    async def fill(request: Request) -> PlainTextResponse:
        """The session becomes `theme` and keys-1 more keys holding `size` bytes in all."""
        keys, size = int(request.path_params["keys"]), int(request.path_params["size"])
        session = await access.session(request)
        session.pop("cart", None)
        for number in range(1, keys):
            session[f"k{number}"] = _sized(size // keys) if size else number
        return PlainTextResponse("ok")

    routes = [
        Route("/anonymous", anonymous),
        Route("/read", read),
        Route("/write", write, methods=["POST"]),
        Route("/login", login, methods=["POST"]),
        Route("/count/{slot}", count, methods=["POST"]),
        Route("/counters", counters),
        Route("/fill/{keys}/{size}", fill),
    ]
    return Starlette(routes=routes, middleware=middleware)


@dataclass
class Variant:
    key: str
    app: Any
    config: Any = None  # ours: the SessionConfig
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def uses_redis(self) -> bool:
        return self.key not in ("floor", "starlette")

    async def close(self) -> None:
        for closer in self.closers:
            await closer()


def build(key: str, prefix: str, redis_url: str = REDIS_URL, **extra: Any) -> Variant:
    """The variant `key`, its Redis keys under `prefix` (`extra`: more of our options)."""
    if key == "floor":
        return Variant(key, build_app(NoSession(), []))
    if key == "floor-redis":
        stored, setup = f"{prefix}floor-redis", redis.Redis.from_url(redis_url)
        setup.set(stored, "x" * RECORD_BYTES, ex=SESSION_LIFETIME)
        setup.close()
        connection = redis.asyncio.Redis.from_url(redis_url)
        access = OneRedisGet(connection, stored)
        return Variant(key, build_app(access, []), None, [connection.aclose])
    if key == "starlette":
        cookie = Middleware(
            CookieSessionMiddleware,
            secret_key=SECRET,
            session_cookie=COOKIE,
            max_age=SESSION_LIFETIME,
            https_only=False,
        )
        return Variant(key, build_app(Access(), [cookie]))
    if key == "starsessions":
        connection = redis.asyncio.Redis.from_url(redis_url)
        store = RedisStore(connection=connection, prefix=f"{prefix}starsessions:")
        middleware = Middleware(
            StarSessionMiddleware,
            store=store,
            lifetime=SESSION_LIFETIME,
            cookie_name=COOKIE,
            cookie_https_only=False,
        )
        return Variant(
            key, build_app(StarsessionsAccess(), [middleware]), None, [connection.aclose]
        )
    options: dict[str, Any] = {
        "ours-redis": {},
        "ours-redispy": {"redis_multiplex": False},
        "ours-sql": {"epochs": sql.provider(prefix) if key == "ours-sql" else None},
        "ours-cache": {"local_cache": 10_000},
    }[key]
    config = sessions(
        secret_key=SECRET,
        redis_url=redis_url,
        key_prefix=extra.pop("key_prefix", f"{prefix}{key}:"),
        session_cookie=COOKIE,
        max_age=SESSION_LIFETIME,
        max_session_bytes=MAX_SESSION_BYTES,
        **options,
        **extra,
    )
    variant = Variant(key, config(build_app(OurAccess(), [])), config, [config.aclose])
    if "epochs" in options:
        variant.closers.append(lambda: sql.close(options["epochs"]))
    return variant


def available(key: str) -> str | None:
    """None if the variant can run here, else why not."""
    return sql.unavailable() if key == "ours-sql" else None


def served() -> Any:
    """The uvicorn app factory: the variant the environment names (one per worker), the
    collector set as the run asks once it is built (see tune_collector)."""
    app = build(os.environ["SMBENCH_VARIANT"], os.environ["SMBENCH_PREFIX"]).app
    tune_collector(os.environ.get(COLLECTOR_VARIABLE, "default"))
    return app


def tune_collector(setting: str) -> None:
    """The settings of docs/deployment.md's checklist: `freeze` moves every object alive
    once the app is built (modules, routes, clients) out of the collector's reach, so a
    full collection looks at what requests made since; `2000` is Python 3.13's young
    threshold on older versions."""
    if setting not in COLLECTOR_SETTINGS:
        raise ValueError(f"unknown collector setting {setting!r}")
    if "2000" in setting:
        gc.set_threshold(2000, 10, 10)
    if "freeze" in setting:
        gc.collect()
        gc.freeze()


if __name__ == "__main__":
    import uvicorn

    key, port, prefix, loop, workers = sys.argv[1:6]
    os.environ.update(SMBENCH_VARIANT=key, SMBENCH_PREFIX=prefix)
    uvicorn.run(
        "benchmarks.variants:served",
        factory=True,
        host="127.0.0.1",
        port=int(port),
        loop=loop,
        workers=int(workers),
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
