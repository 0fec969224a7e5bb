"""The configuration of one session layer, below the drivers: what they build on.

`Settings` is what ``sessions(...)`` is given, validated when it is built and frozen after:
one small check per setting, in the table `_CHECKS`. `Configuration` builds from it what a
request needs (the key layout, the Redis clients, the epoch provider, the core) and offers
the operations on a user. The public face, ``config.SessionConfig``, adds the decorator,
which loads a driver; the drivers build a Configuration from keywords. Keeping the two in
separate modules is what lets both import one way (tests/test_layout.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeAlias, TypeVar

import redis as redis_py
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import _fail_closed as unavailable
from ._cookie_rules import check_cookie
from ._core.epoch_provider import EpochContext, EpochProvider, Interface, SessionRedis
from ._core.lifecycle import Core
from ._core.runners import drive_async, drive_sync
from ._core.user_sessions import SessionInfo, UserSessions, UserState
from ._encryption import fernet_cipher
from ._protocol.cookies import CookieCodec, SameSite, SecretKeys
from ._protocol.key_layout import KeySpace, UserId
from ._protocol.timing import DEFAULT_MAX_AGE, Timing
from ._transport.clients import DEFAULT_MAX_CONNECTIONS, RedisClients
from ._transport.local_cache import CachingClients
from .epochs.redis import RedisEpochs

if TYPE_CHECKING:
    from .epochs.sql import SQLEpochs
from .errors import ConfigurationError, InvalidationUncertain, StoreUnavailable
from .events import Listener, Listeners
from .expiry import ExpiryListener, listen

logger = logging.getLogger("session_middleware")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_MAX_SESSIONS_PER_USER = 100

OnRedisError = Literal["503", "raise"]

RedisClient: TypeAlias = (
    redis_py.Redis
    | redis_py.asyncio.Redis
    | redis_py.cluster.RedisCluster
    | redis_py.asyncio.cluster.RedisCluster
)
"""What ``sessions(redis=...)`` takes: a redis-py client, sync or async, of a single Redis
(a Sentinel master from ``Sentinel(...).master_for(...)`` is one) or of a Cluster. A URL is
given as ``redis_url=`` instead."""

SecretKey: TypeAlias = "str | bytes | Sequence[str | bytes] | Any"
"""A secret key, a Starlette ``Secret`` (anything whose str() is the key), or a list of them
(the first signs, every one verifies)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """The settings of one session layer, as ``sessions(...)`` takes them (each documented
    on config.SessionConfig), validated when built and frozen after. redis_url is filled in
    (DEFAULT_REDIS_URL) when neither it nor redis is given, and exclude_paths made a tuple.
    The secrets and the URL (which may hold a password) are left out of its repr."""

    secret_key: SecretKey | None = dataclasses.field(default=None, repr=False)
    redis_url: str | None = dataclasses.field(default=None, repr=False)
    redis: RedisClient | None = None
    epochs: RedisEpochs | SQLEpochs | None = None
    session_cookie: str = "session"
    max_age: int | timedelta | None = DEFAULT_MAX_AGE
    idle_timeout: int | timedelta | None = None
    refresh_interval: float | timedelta | None = None
    path: str = "/"
    domain: str | None = None
    same_site: SameSite = "lax"
    https_only: bool = False
    partitioned: bool = False
    key_prefix: str = "sm:"
    interface: Interface | None = None
    on_redis_error: OnRedisError = "503"
    redis_timeout: float | None = 2.0
    redis_max_connections: int = DEFAULT_MAX_CONNECTIONS
    redis_multiplex: bool = True
    track_devices: bool = True
    max_session_bytes: int = 64 * 1024
    encryption_key: str | bytes | Sequence[str | bytes] | None = dataclasses.field(
        default=None, repr=False
    )
    local_cache: int | None = None
    local_cache_max_lag: float = 1.0
    websocket_recheck: float = 5.0
    on_event: Listener | None = None
    exclude_paths: Sequence[str] = ()
    invalidate_wait_replicas: int = 1
    invalidate_wait_timeout_ms: int | None = None
    invalidate_deadline: float = 10.0
    max_sessions_per_user: int | None = DEFAULT_MAX_SESSIONS_PER_USER

    def __post_init__(self) -> None:
        for check in _CHECKS:
            check(self)

    @property
    def wait_timeout_ms(self) -> int:
        """invalidate_wait_timeout_ms, or its default: 1000 ms, or half of redis_timeout
        when that is shorter (WAIT must answer before the socket times out)."""
        if self.invalidate_wait_timeout_ms is not None:
            return self.invalidate_wait_timeout_ms
        if self.redis_timeout is None:
            return 1000
        return max(1, min(1000, int(self.redis_timeout * 500)))

    @functools.cached_property
    def timing(self) -> Timing:
        """The lifetimes max_age, idle_timeout and refresh_interval ask for."""
        return Timing.from_settings(self.max_age, self.idle_timeout, self.refresh_interval)

    def _fill_in(self, name: str, value: object) -> None:
        """Set a default that depends on other settings (while it is being validated)."""
        object.__setattr__(self, name, value)


SettingCheck: TypeAlias = Callable[[Settings], None]


def _one_of(name: str, choices: tuple[object, ...], message: str) -> SettingCheck:
    def check(settings: Settings) -> None:
        if getattr(settings, name) not in choices:
            raise ConfigurationError(message)

    return check


def _count(name: str, message: str, *, optional: bool = False) -> SettingCheck:
    """A whole number, 1 or more (None too when `optional`); bool is no number here."""

    def check(settings: Settings) -> None:
        value = getattr(settings, name)
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(message)

    return check


def _positive(name: str, message: str) -> SettingCheck:
    def check(settings: Settings) -> None:
        if not getattr(settings, name) > 0:
            raise ConfigurationError(message)

    return check


def _warn_same_site_none(settings: Settings) -> None:
    if settings.same_site == "none" and not settings.https_only:
        logger.warning(
            "same_site='none' without https_only=True: browsers drop SameSite=None "
            "cookies that are not Secure"
        )


def _check_cookie(settings: Settings) -> None:
    check_cookie(
        settings.session_cookie,
        https_only=settings.https_only,
        path=settings.path,
        domain=settings.domain,
    )


def _check_timing(settings: Settings) -> None:
    settings.timing  # noqa: B018  (builds it, raising on a bad lifetime)


def _fill_in_redis_url(settings: Settings) -> None:
    if settings.redis_url is None and settings.redis is None:
        settings._fill_in("redis_url", DEFAULT_REDIS_URL)


def _check_invalidation_wait(settings: Settings) -> None:
    """invalidate_user's replica wait: a count, an attempt shorter than redis_timeout."""
    replicas, wait_ms = settings.invalidate_wait_replicas, settings.wait_timeout_ms
    if replicas < 0 or wait_ms <= 0:
        raise ConfigurationError(
            "invalidate_wait_replicas must be 0 or more, invalidate_wait_timeout_ms positive"
        )
    if not settings.invalidate_deadline > 0:
        raise ConfigurationError("invalidate_deadline must be a positive number of seconds")
    timeout = settings.redis_timeout
    if replicas and timeout is not None and wait_ms >= timeout * 1000:
        raise ConfigurationError("invalidate_wait_timeout_ms must be shorter than redis_timeout")


def _check_redis_client(settings: Settings) -> None:
    client = settings.redis
    if client is not None and not callable(getattr(client, "execute_command", None)):
        raise ConfigurationError(
            f"redis= takes a redis-py client, not {type(client).__name__}; give a URL as redis_url="
        )


def _check_local_cache(settings: Settings) -> None:
    """What the local cache needs of the settings (its Redis is checked when built)."""
    if settings.local_cache is None:
        return
    if settings.redis_url is None or settings.local_cache <= 0:
        raise ConfigurationError(
            "local_cache needs redis_url (it opens tracking connections of its own) "
            "and a positive number of entries"
        )
    if not 0 < settings.local_cache_max_lag <= 60:
        raise ConfigurationError("local_cache_max_lag must be in (0, 60] seconds")


def _check_exclude_paths(settings: Settings) -> None:
    paths = settings.exclude_paths
    if isinstance(paths, str) or not all(
        isinstance(path, str) and path.startswith("/") for path in paths
    ):
        raise ConfigurationError("exclude_paths must be a list of paths starting with '/'")
    settings._fill_in("exclude_paths", tuple(paths))


_CHECKS: tuple[SettingCheck, ...] = (
    _one_of("same_site", ("lax", "strict", "none"), "same_site must be 'lax', 'strict' or 'none'"),
    _warn_same_site_none,
    _check_cookie,
    _check_timing,
    _one_of("on_redis_error", ("503", "raise"), "on_redis_error must be '503' or 'raise'"),
    _one_of(
        "interface", (None, "asgi", "wsgi"), "interface must be 'asgi', 'wsgi' or None (detect)"
    ),
    _fill_in_redis_url,
    _count("redis_max_connections", "redis_max_connections must be a whole number, 1 or more"),
    _check_invalidation_wait,
    _count(
        "max_sessions_per_user",
        "max_sessions_per_user must be a positive int, or None",
        optional=True,
    ),
    _check_redis_client,
    _check_local_cache,
    _positive("websocket_recheck", "websocket_recheck must be a positive number of seconds"),
    _check_exclude_paths,
)

P = ParamSpec("P")
C = TypeVar("C")


def _takes_settings(
    settings: Callable[P, Settings],
) -> Callable[[Callable[Concatenate[C, ...], None]], Callable[Concatenate[C, P], None]]:
    """An ``__init__(self, **keywords)`` typed with the keywords of `settings` (for type
    checkers and help()), refusing an unknown one with a ConfigurationError that names the
    closest one it does take (a typo found at start-up, not at the first request)."""

    signature = inspect.signature(settings)
    known = list(signature.parameters)

    def typed(init: Callable[Concatenate[C, ...], None]) -> Callable[Concatenate[C, P], None]:
        @functools.wraps(init)
        def init_with_known_keywords(self: C, /, *args: P.args, **keywords: P.kwargs) -> None:
            for keyword in keywords:
                if keyword not in known:
                    raise unknown_keyword(keyword, known)
            init(self, *args, **keywords)

        self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
        init_with_known_keywords.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[self_parameter, *signature.parameters.values()], return_annotation=None
        )
        return init_with_known_keywords

    return typed


def unknown_keyword(keyword: str, known: Sequence[str]) -> ConfigurationError:
    """The error for a setting no one takes, with the closest valid one if any is close."""
    close = difflib.get_close_matches(keyword, known, n=1)
    hint = f"did you mean {close[0]}?" if close else "see help(sessions) for the settings"
    return ConfigurationError(f"unknown setting {keyword}", hint)


class Configuration:
    """One configured session layer, built from its Settings (``sessions(...)`` builds
    one, as SessionConfig, and so do the drivers given keywords): what a request needs,
    and the operations on a user's sessions from anywhere.

    Frozen once built, as its settings (``config.settings``) are: to change a setting,
    build another."""

    settings: Settings
    #: The names of the keywords given to ``sessions(...)``: an integration whose framework
    #: has settings of its own (Flask's) lets these win over them.
    given_settings: frozenset[str]
    secret_keys: SecretKeys
    keys: KeySpace
    redis: SessionRedis
    #: Where the session Redis is, its password masked (for messages and logs).
    store_location: str
    listeners: Listeners
    epochs: EpochProvider
    core: Core
    _frozen = False

    @_takes_settings(Settings)
    def __init__(self, **keywords: Any) -> None:
        settings = Settings(**keywords)
        self.settings = settings
        self.given_settings = frozenset(keywords)
        self.secret_keys = SecretKeys(settings.secret_key)
        try:
            self.keys = KeySpace(settings.key_prefix, self.secret_keys.tag_keys)
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
        self.redis = _session_redis(settings)
        self.store_location = unavailable.describe_store(settings.redis_url, settings.redis)
        self.listeners = Listeners(unavailable.OutageLog(self.store_location))
        if settings.on_event is not None:
            self.listeners.add(settings.on_event)
        self.epochs = settings.epochs if settings.epochs is not None else RedisEpochs()
        self.epochs.attach(_epoch_context(settings, self.keys, self.redis))
        self.core = _core(settings, self.keys, self.secret_keys, self.epochs)
        self._users = UserSessions(self.core)
        self._frozen = True

    def __setattr__(self, name: str, value: Any) -> None:
        if self._frozen:
            raise AttributeError(
                f"a {type(self).__name__} is frozen: {name} cannot be set once it is built; "
                "build another with sessions(...)"
            )
        super().__setattr__(name, value)

    @property
    def interface(self) -> Interface | None:
        return self.settings.interface

    @property
    def on_redis_error(self) -> OnRedisError:
        return self.settings.on_redis_error

    @property
    def websocket_recheck(self) -> float:
        return self.settings.websocket_recheck

    @property
    def exclude_paths(self) -> tuple[str, ...]:
        return tuple(self.settings.exclude_paths)

    # -- what an app needs --------------------------------------------------------

    def check_interface(self, interface: Interface) -> None:
        """Fail at start-up, not at the first request, if this app cannot be served."""
        if not self.secret_keys.configured:
            raise ConfigurationError("secret_key is required")
        if interface == "wsgi" and isinstance(self.redis, CachingClients):
            raise ConfigurationError(
                "local_cache works for ASGI apps only: a WSGI app reads Redis on every "
                "request (leave local_cache out)"
            )
        if interface == "asgi" and not self.redis.can_async:
            raise ConfigurationError("an ASGI app needs an async Redis client (redis.asyncio)")
        if interface == "wsgi" and not self.redis.can_sync:
            raise ConfigurationError("a WSGI app needs a sync Redis client (redis.Redis)")
        self.epochs.check_interface(interface)

    # -- operations on a user, from anywhere ---------------------------------------

    def invalidate_user(self, user_id: UserId, *, delete: bool = False) -> None:
        """Reject every existing session of the user from now on, on every worker.

        The new epoch alone rejects them; `delete=True` also deletes their records now,
        freeing the memory at once instead of at their next request or expiry.

        With the default invalidate_wait_replicas=1, it returns once a replica of the
        master has the new epoch too (see docs/deployment.md), retrying through a failover
        for up to invalidate_deadline seconds; then it raises NotReplicated (the epoch may
        be on the master alone) or StoreUnavailable.

        Raises InvalidationUncertain (a StoreUnavailable) when Redis did not
        answer in time: the new epoch may have been applied, or may be applied once Redis
        answers again. Treat the user as possibly invalidated and call this again until it
        returns; invalidating twice ends the same sessions, so a retry is always safe.
        """
        with _uncertain("invalidate_user"):
            self.run_sync(self._users.invalidate(user_id, delete))

    async def ainvalidate_user(self, user_id: UserId, *, delete: bool = False) -> None:
        """The async twin of invalidate_user (raises InvalidationUncertain alike)."""
        with _uncertain("ainvalidate_user"):
            await self.run_async(self._users.invalidate(user_id, delete))

    def list_sessions(self, user_id: UserId) -> list[SessionInfo]:
        """The user's active sessions, most recently seen first."""
        result: list[SessionInfo] = self.run_sync(self._users.list(user_id, time.time()))
        return result

    async def alist_sessions(self, user_id: UserId) -> list[SessionInfo]:
        """The async twin of list_sessions."""
        result: list[SessionInfo] = await self.run_async(self._users.list(user_id, time.time()))
        return result

    def user_state(self, user_id: UserId) -> UserState:
        """What the store holds for the user, read only: whether they have an epoch, and
        their live sessions. ``found`` False (no epoch, no session) most often means that
        this configuration looks elsewhere than the app's: another secret key, key prefix
        or Redis db, or a user id of another form."""
        state: UserState = self.run_sync(self._users.state(user_id, time.time()))
        return state

    async def auser_state(self, user_id: UserId) -> UserState:
        """The async twin of user_state."""
        state: UserState = await self.run_async(self._users.state(user_id, time.time()))
        return state

    def revoke_session(self, user_id: UserId, handle: str) -> bool:
        """End the user's session `handle` now; False if no such session of theirs."""
        revoked: bool = self.run_sync(self._users.revoke(user_id, handle))
        return revoked

    async def arevoke_session(self, user_id: UserId, handle: str) -> bool:
        """The async twin of revoke_session."""
        revoked: bool = await self.run_async(self._users.revoke(user_id, handle))
        return revoked

    def listen_for_expiry(self) -> ExpiryListener:
        """Start a thread that emits an ``expired`` event for every session record that
        expires in Redis, heard from keyspace notifications (off the request path; see
        docs/expiry-events.md). Needs ``notify-keyspace-events`` with ``Kx`` or ``Ex`` on the
        server, and a single Redis or Sentinel. Call ``stop()`` on the result to end it."""
        return listen(self.redis, self.keys, self.listeners)

    # -- resources --------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync connection pool (e.g. at the end of a script). With a Sentinel
        URL, the threads that follow the service's master end once the async connections
        are closed too (`aclose`, in each event loop that used them)."""
        self.redis.close()

    async def aclose(self) -> None:
        """Close the async connections of the running event loop (e.g. at shutdown)."""
        await self.redis.aclose()

    # -- running the core ---------------------------------------------------------------

    def run_sync(self, step: Any) -> Any:
        return drive_sync(step, self.redis, self.listeners)

    def run_async(self, step: Any) -> Awaitable[Any]:
        """The step's result, to await (the runner's own coroutine: no layer of this one)."""
        return drive_async(step, self.redis, self.listeners)


# -- what the settings build ------------------------------------------------------------


def _session_redis(settings: Settings) -> SessionRedis:
    """The session Redis: clients built from redis_url or given as redis=, read through
    the local cache when it is on (a single Redis only)."""
    clients = RedisClients(
        url=settings.redis_url,
        client=settings.redis,
        timeout=settings.redis_timeout,
        max_connections=settings.redis_max_connections,
        multiplex=settings.redis_multiplex,
    )
    if settings.local_cache is None or settings.redis_url is None:
        return clients
    if clients.topology != "standalone":
        raise ConfigurationError(
            "local_cache works with a single Redis (no cluster, no Sentinel) in this version"
        )
    return CachingClients(
        clients,
        settings.redis_url,
        clients.timeout_options(),
        settings.local_cache,
        settings.local_cache_max_lag,
    )


def _epoch_context(settings: Settings, keys: KeySpace, redis: SessionRedis) -> EpochContext:
    return EpochContext(
        keys=keys,
        redis=redis,
        epoch_ttl_ms=settings.timing.epoch_ttl_ms,
        redis_timeout=settings.redis_timeout,
        wait_replicas=settings.invalidate_wait_replicas,
        wait_timeout_ms=settings.wait_timeout_ms,
        wait_deadline=settings.invalidate_deadline,
    )


def _core(
    settings: Settings, keys: KeySpace, secret_keys: SecretKeys, epochs: EpochProvider
) -> Core:
    timing = settings.timing
    codec = CookieCodec(
        secret_keys,
        name=settings.session_cookie,
        path=settings.path,
        domain=settings.domain,
        same_site=settings.same_site,
        secure=settings.https_only,
        partitioned=settings.partitioned,
        max_age=None if settings.max_age is None else timing.lifetime,
    )
    encryption_key = settings.encryption_key
    return Core(
        keys,
        codec,
        epochs,
        timing,
        track_devices=settings.track_devices,
        max_bytes=settings.max_session_bytes,
        cipher=None if encryption_key is None else fernet_cipher(encryption_key),
        max_sessions_per_user=settings.max_sessions_per_user or 0,
    )


@contextlib.contextmanager
def _uncertain(operation: str) -> Iterator[None]:
    """A bump that timed out may still be applied: say so (InvalidationUncertain)."""
    try:
        yield
    except StoreUnavailable as error:
        if type(error) is StoreUnavailable and isinstance(error.__cause__, RedisTimeoutError):
            raise InvalidationUncertain(operation) from error.__cause__
        raise


__all__ = [
    "DEFAULT_REDIS_URL",
    "Configuration",
    "RedisClient",
    "SessionRedis",
    "Settings",
    "unknown_keyword",
]
