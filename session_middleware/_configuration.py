"""The settings of one session layer (validation, defaults, the objects they build and the
user-level operations), and what the ASGI and WSGI drivers share. The public face, with
the decorator, is config.SessionConfig; the drivers depend on this module only."""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, ParamSpec, TypeAlias, TypeVar

from redis.exceptions import TimeoutError as RedisTimeoutError

from . import _fail_closed as unavailable
from ._core.epoch_provider import EpochContext, EpochProvider, Interface
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
from .errors import ConfigurationError, InvalidationUncertain, StoreUnavailable
from .events import Listener, Listeners
from .expiry import ExpiryListener, listen

if TYPE_CHECKING:
    import redis as redis_py
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.cluster

    # A redis-py client (a Sentinel master from master_for is a Redis too).
    RedisClient: TypeAlias = (
        redis_py.Redis
        | redis_py.asyncio.Redis
        | redis_py.cluster.RedisCluster
        | redis_py.asyncio.cluster.RedisCluster
    )
else:
    RedisClient = Any

logger = logging.getLogger("session_middleware")
P = ParamSpec("P")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_MAX_SESSIONS_PER_USER = 100

OnRedisError = Literal["503", "raise"]
_Configured = TypeVar("_Configured", bound="Configuration")


def _known_keywords(init: Callable[P, None]) -> Callable[P, None]:
    """`init`, refusing a keyword it does not take with a ConfigurationError that names
    the closest one it does (a typo found at start-up, not at the first request)."""
    known = [name for name in inspect.signature(init).parameters if name != "self"]

    @functools.wraps(init)
    def init_with_known_keywords(*args: P.args, **kwargs: P.kwargs) -> None:
        for keyword in kwargs:
            if keyword not in known:
                raise unknown_keyword(keyword, known)
        init(*args, **kwargs)

    return init_with_known_keywords


def unknown_keyword(keyword: str, known: Sequence[str]) -> ConfigurationError:
    """The error for a setting no one takes, with the closest valid one if any is close."""
    close = difflib.get_close_matches(keyword, known, n=1)
    hint = f"did you mean {close[0]}?" if close else "see help(sessions) for the settings"
    return ConfigurationError(f"unknown setting {keyword}", hint)


class Configuration:
    """One configured session layer: a decorator for apps, plus user-level operations.

    secret_key: signs the cookie; a list rotates keys (the first signs, all verify).
        Required, except with Flask's init_app: without it, the cookie is signed with
        ``app.secret_key`` (and ``SECRET_KEY_FALLBACKS`` verify), as Flask's own is.
    redis_url / redis: the session Redis, as a URL or a redis-py client (sync or async).
    epochs: where user epochs live (default RedisEpochs() on the session Redis).
    session_cookie, path, domain, same_site, https_only, partitioned: the cookie, with the
        meaning Starlette's SessionMiddleware gives them. HttpOnly is always set.
    max_age: absolute lifetime of a session in seconds (and the cookie's Max-Age); None
        makes a browser-session cookie, and the server still ends it after 14 days.
    idle_timeout: end a session unused for this many seconds (sliding; off by default).
    refresh_interval: how often, at most, a read writes the session back to record that
        it was seen (and to extend the idle timeout); default 300 s, or a tenth of
        idle_timeout if that is shorter.
    track_devices: keep the user agent and client IP seen at login, for list_sessions.
    max_session_bytes: the largest stored session; a handler that goes over it gets
        SessionTooLarge (a ValueError) instead of a silent drop.
    local_cache: opt-in: keep up to this many session records and epochs in process,
        kept correct by Redis invalidation messages (CLIENT TRACKING), so a repeat read
        costs no round trip. ASGI only; needs redis_url. See the README for the window.
    local_cache_max_lag: the cache serves a value only while its listener proved, less
        than this many seconds ago (default 1.0), that it had every invalidation Redis
        sent; otherwise the cache is dropped and reads go to Redis. The longest an
        invalidated session can still be served by another worker, partitions included.
    exclude_paths: path prefixes (e.g. "/static/") whose requests pass straight through:
        no session, no Redis read, no cookie, no Vary.
    on_event: called with a SessionEvent for every login, rotation, logout, log-out-others,
        rejected session (and why), invalidation, revocation and session ended by
        max_sessions_per_user, for audit logs and metrics; more with `config.listeners.add`.
    websocket_recheck: an open WebSocket's session is verified again at most this many
        seconds apart (default 5.0; at once when the local cache hears of a change to it),
        and the WebSocket is closed with 1008 when the session has ended.
    encryption_key: encrypt session data at rest (Fernet keys; a list rotates them, the
        first encrypts). Needs the `encryption` extra.
    key_prefix: prefix of every Redis key.
    interface: 'asgi' or 'wsgi' to override detection.
    on_redis_error: '503' answers 503 when Redis cannot be reached; 'raise' lets the
        redis-py error propagate to your own error handling.
    redis_timeout: socket timeouts (seconds) of clients built from redis_url, and the
        longest a request waits for a free pooled connection before the 503.
    redis_max_connections: connections per pool of clients built from redis_url (one
        pool per worker and event loop, per node on a cluster; default 100); a
        ``?max_connections=`` in the URL wins. See docs/deployment.md.
    redis_multiplex: the request path's own commands share one multiplexed connection per
        worker and event loop, written together and answered in order (default True; for
        a standalone or Sentinel redis_url; a Cluster, or a client given as ``redis=``,
        always uses redis-py). False: redis-py's connection pool, as for everything else.
    invalidate_wait_replicas: invalidate_user returns only once this many replicas of
        the master (default 1; fewer if it has fewer) have the new epoch (Redis WAIT), so
        a failover cannot undo it; 0 does not wait.
    invalidate_wait_timeout_ms: how long one attempt waits for the replicas; shorter than
        redis_timeout (default 1000 ms, or half of redis_timeout if that is shorter).
    invalidate_deadline: an attempt that fails (too few replicas, the master gone) is
        made again, on the master found then, for this many seconds (default 10.0);
        then invalidate_user raises NotReplicated or StoreUnavailable.
    max_sessions_per_user: at a login past this many live sessions of the user, the ones
        closest to expiring (the least recently used, with idle_timeout) are ended, inside
        the login's own script; None for no limit.
    """

    #: The names of the keywords given to ``sessions(...)``: an integration whose framework
    #: has settings of its own (Flask's) lets these win over them.
    given_settings: frozenset[str]

    def __new__(cls: type[_Configured], **settings: Any) -> _Configured:
        configuration = super().__new__(cls)
        configuration.given_settings = frozenset(settings)
        return configuration

    @_known_keywords
    def __init__(
        self,
        *,
        secret_key: str | bytes | Sequence[str | bytes] | Any | None = None,
        redis_url: str | None = None,
        redis: RedisClient | None = None,
        epochs: EpochProvider | None = None,
        session_cookie: str = "session",
        max_age: int | timedelta | None = DEFAULT_MAX_AGE,
        idle_timeout: int | timedelta | None = None,
        refresh_interval: float | timedelta | None = None,
        path: str = "/",
        domain: str | None = None,
        same_site: SameSite = "lax",
        https_only: bool = False,
        partitioned: bool = False,
        key_prefix: str = "sm:",
        interface: Interface | None = None,
        on_redis_error: OnRedisError = "503",
        redis_timeout: float | None = 2.0,
        redis_max_connections: int = DEFAULT_MAX_CONNECTIONS,
        redis_multiplex: bool = True,
        track_devices: bool = True,
        max_session_bytes: int = 64 * 1024,
        encryption_key: str | bytes | Sequence[str | bytes] | None = None,
        local_cache: int | None = None,
        local_cache_max_lag: float = 1.0,
        websocket_recheck: float = 5.0,
        on_event: Listener | None = None,
        exclude_paths: Sequence[str] = (),
        invalidate_wait_replicas: int = 1,
        invalidate_wait_timeout_ms: int | None = None,
        invalidate_deadline: float = 10.0,
        max_sessions_per_user: int | None = DEFAULT_MAX_SESSIONS_PER_USER,
    ) -> None:
        self.secret_keys = SecretKeys(secret_key)
        if same_site not in ("lax", "strict", "none"):
            raise ConfigurationError("same_site must be 'lax', 'strict' or 'none'")
        if same_site == "none" and not https_only:
            logger.warning(
                "same_site='none' without https_only=True: browsers drop SameSite=None "
                "cookies that are not Secure"
            )
        _check_cookie_prefix(session_cookie, https_only=https_only, path=path, domain=domain)
        timing = Timing.from_settings(max_age, idle_timeout, refresh_interval)
        if on_redis_error not in ("503", "raise"):
            raise ConfigurationError("on_redis_error must be '503' or 'raise'")
        if interface not in (None, "asgi", "wsgi"):
            raise ConfigurationError("interface must be 'asgi', 'wsgi' or None (detect)")
        if redis_url is None and redis is None:
            redis_url = DEFAULT_REDIS_URL
        if (
            isinstance(redis_max_connections, bool)
            or not isinstance(redis_max_connections, int)
            or redis_max_connections < 1
        ):
            raise ConfigurationError("redis_max_connections must be a whole number, 1 or more")
        if invalidate_wait_timeout_ms is None:
            invalidate_wait_timeout_ms = _default_wait_timeout_ms(redis_timeout)
        if invalidate_wait_replicas < 0 or invalidate_wait_timeout_ms <= 0:
            raise ConfigurationError(
                "invalidate_wait_replicas must be 0 or more, invalidate_wait_timeout_ms positive"
            )
        if not invalidate_deadline > 0:
            raise ConfigurationError("invalidate_deadline must be a positive number of seconds")
        if (
            invalidate_wait_replicas
            and redis_timeout is not None
            and invalidate_wait_timeout_ms >= redis_timeout * 1000
        ):
            raise ConfigurationError(
                "invalidate_wait_timeout_ms must be shorter than redis_timeout"
            )

        if max_sessions_per_user is not None and (
            isinstance(max_sessions_per_user, bool)
            or not isinstance(max_sessions_per_user, int)
            or max_sessions_per_user < 1
        ):
            raise ConfigurationError("max_sessions_per_user must be a positive int, or None")
        self.interface = interface
        self.on_redis_error = on_redis_error
        try:
            self.keys = KeySpace(key_prefix, self.secret_keys.tag_keys)
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
        if redis is not None and not callable(getattr(redis, "execute_command", None)):
            raise ConfigurationError(
                f"redis= takes a redis-py client, not {type(redis).__name__}; "
                "give a URL as redis_url="
            )
        self.redis: Any = RedisClients(
            url=redis_url,
            client=redis,
            timeout=redis_timeout,
            max_connections=redis_max_connections,
            multiplex=redis_multiplex,
        )
        if local_cache is not None:
            if redis_url is None or local_cache <= 0:
                raise ConfigurationError(
                    "local_cache needs redis_url (it opens tracking connections of its own) "
                    "and a positive number of entries"
                )
            if self.redis.topology != "standalone":
                raise ConfigurationError(
                    "local_cache works with a single Redis (no cluster, "
                    "no Sentinel) in this version"
                )
            if not 0 < local_cache_max_lag <= 60:
                raise ConfigurationError("local_cache_max_lag must be in (0, 60] seconds")
            options = self.redis.timeout_options()
            self.redis = CachingClients(
                self.redis, redis_url, options, local_cache, local_cache_max_lag
            )
        if not websocket_recheck > 0:
            raise ConfigurationError("websocket_recheck must be a positive number of seconds")
        self.websocket_recheck = websocket_recheck
        if isinstance(exclude_paths, str) or not all(
            isinstance(path, str) and path.startswith("/") for path in exclude_paths
        ):
            raise ConfigurationError("exclude_paths must be a list of paths starting with '/'")
        self.exclude_paths = tuple(exclude_paths)
        #: Where the session Redis is, its password masked (for messages and logs).
        self.store_location = unavailable.describe_store(redis_url, redis)
        self.listeners = Listeners(unavailable.OutageLog(self.store_location))
        if on_event is not None:
            self.listeners.add(on_event)
        self.epochs: EpochProvider = epochs if epochs is not None else RedisEpochs()
        self.epochs.attach(
            EpochContext(
                keys=self.keys,
                redis=self.redis,
                epoch_ttl_ms=timing.epoch_ttl_ms,
                redis_timeout=redis_timeout,
                wait_replicas=invalidate_wait_replicas,
                wait_timeout_ms=invalidate_wait_timeout_ms,
                wait_deadline=invalidate_deadline,
            )
        )
        codec = CookieCodec(
            self.secret_keys,
            name=session_cookie,
            path=path,
            domain=domain,
            same_site=same_site,
            secure=https_only,
            partitioned=partitioned,
            max_age=None if max_age is None else timing.lifetime,
        )
        self.core = Core(
            self.keys,
            codec,
            self.epochs,
            timing,
            track_devices=track_devices,
            max_bytes=max_session_bytes,
            cipher=None if encryption_key is None else fernet_cipher(encryption_key),
            max_sessions_per_user=max_sessions_per_user or 0,
        )
        self._users = UserSessions(self.core)

    # -- the decorator --------------------------------------------------------------

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
        """Close the sync connection pool (e.g. at the end of a script)."""
        if self.redis.can_sync:
            client = self.redis.sync()
            close = getattr(client, "close", None)
            if close is not None:
                close()

    async def aclose(self) -> None:
        """Close the async connection pool of the running event loop (e.g. at shutdown)."""
        if self.redis.can_async:
            client = self.redis.async_()
            close = getattr(client, "aclose", None)
            if close is not None:
                await close()

    # -- running the core ---------------------------------------------------------------

    def run_sync(self, step: Any) -> Any:
        return drive_sync(step, self.redis, self.listeners)

    async def run_async(self, step: Any) -> Any:
        return await drive_async(step, self.redis, self.listeners)


class ConfiguredMiddleware:
    """What the ASGI and WSGI middleware share: a configuration checked for their kind."""

    interface: Interface

    def __init__(
        self,
        app: Any = None,
        secret_key: Any = None,
        /,
        config: Configuration | None = None,
        **settings: Any,
    ) -> None:
        if "app" in settings:
            # Starlette up to 0.41.2 builds middleware as `cls(*args, app=app, **kwargs)`:
            # the app by keyword, and a key given by position comes first.
            app, secret_key = settings.pop("app"), app
        if app is None:
            raise TypeError(f"{type(self).__name__} needs the app it wraps")
        if secret_key is not None:  # positional, as Starlette's SessionMiddleware takes it
            settings["secret_key"] = secret_key
        if config is None:
            config = Configuration(**settings)
        elif settings:
            raise ConfigurationError(
                f"pass either config= or settings, not both (got {', '.join(sorted(settings))})"
            )
        if not config.secret_keys.given:  # a framework's own key is read by its integration
            raise ConfigurationError("secret_key is required")
        config.check_interface(self.interface)
        self.app = app
        self.config = config
        self._core = config.core
        self._fail_open = not unavailable.answers_503(config.on_redis_error)
        self._excluded_paths = config.exclude_paths

    def _excluded(self, path: str) -> bool:
        return bool(self._excluded_paths) and path.startswith(self._excluded_paths)


@contextlib.contextmanager
def _uncertain(operation: str) -> Iterator[None]:
    """A bump that timed out may still be applied: say so (InvalidationUncertain)."""
    try:
        yield
    except StoreUnavailable as error:
        if type(error) is StoreUnavailable and isinstance(error.__cause__, RedisTimeoutError):
            raise InvalidationUncertain(operation) from error.__cause__
        raise


def _check_cookie_prefix(name: str, *, https_only: bool, path: str, domain: str | None) -> None:
    """Refuse a cookie browsers would drop or split: a name that is not an RFC 6265
    token, a path or domain holding a control character, a space or ';'; a
    __Host- or __Secure- name (browsers match the prefixes in any letter case) without
    Secure, and a __Host- one with a domain or off path '/'."""
    if not isinstance(name, str) or not name or not _TOKEN.fullmatch(name):
        raise ConfigurationError(
            f"the cookie name {name!r} is not a valid cookie name (RFC 6265): no space, "
            'control character or any of ( ) < > @ , ; : \\ " / [ ] ? = { }'
        )
    for setting, value in (("path", path), ("domain", domain)):
        unsafe = _UNSAFE[setting]
        if value is not None and (not isinstance(value, str) or unsafe.pattern.search(value)):
            raise ConfigurationError(f"the cookie {setting} {value!r} {unsafe.problem}")
    folded = name.lower()
    prefix = next((p for p in ("__Host-", "__Secure-") if folded.startswith(p.lower())), None)
    if prefix is not None and not https_only:
        raise ConfigurationError(f"a {prefix} cookie ({name!r}) needs https_only=True")
    if prefix == "__Host-" and (path != "/" or domain is not None):
        raise ConfigurationError("a __Host- cookie needs path='/' and no domain")


# RFC 6265 cookie-name: an RFC 2616 token (no control character, space or separator).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class _Unsafe(NamedTuple):
    pattern: re.Pattern[str]
    problem: str


_UNSAFE = {
    "path": _Unsafe(
        re.compile(r"[^\x21-\x7e]|;"),
        "holds a space, ';', a control or a non-ASCII character (percent-encode it)",
    ),
    "domain": _Unsafe(
        re.compile(r"[^\x21-\x7e]|[;,]"),
        "holds a space, ';', ',', a control or a non-ASCII character (use its IDNA form)",
    ),
}


def _default_wait_timeout_ms(redis_timeout: float | None) -> int:
    """1000 ms, or half of redis_timeout when that is shorter (WAIT must answer before
    the socket times out)."""
    if redis_timeout is None:
        return 1000
    return max(1, min(1000, int(redis_timeout * 500)))


__all__ = ["Configuration", "ConfiguredMiddleware"]
