"""sessions() / SessionConfig: the configuration of a session layer (see _configuration.py)
and the decorator that wraps an ASGI or WSGI app with it.

The decorator loads the driver an app needs, and only that one; the drivers build on
_configuration.py alone, never on this module.
"""

from __future__ import annotations

import inspect
from typing import Any

from ._configuration import DEFAULT_REDIS_URL, Configuration, RedisClient, Settings
from ._core.epoch_provider import Interface
from ._transport.clients import is_async_client
from .errors import ConfigurationError


class SessionConfig(Configuration):
    """``sessions(...)``: one configured session layer (a Configuration), the decorator for
    apps, and the operations on a user's sessions.

    secret_key: signs the cookie; a list rotates keys (the first signs, all verify).
        Required, except with Flask's init_app: without it, the cookie is signed with
        ``app.secret_key`` (and ``SECRET_KEY_FALLBACKS`` verify), as Flask's own is.
    redis_url / redis: the session Redis, as a URL or a redis-py client: redis.Redis or
        redis.asyncio.Redis, a Sentinel master from ``master_for``, or a RedisCluster of
        either kind (see RedisClient). Default: redis_url DEFAULT_REDIS_URL.
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

    The settings are ``config.settings`` (a frozen Settings), checked when it is built;
    the configuration is frozen too: to change a setting, build another.
    """

    # -- the decorator --------------------------------------------------------------

    def __call__(self, app: Any) -> Any:
        """Wrap an ASGI 3 or WSGI app (detected; `interface=` overrides)."""
        if not callable(app):
            raise ConfigurationError(
                f"sessions(...) wraps an ASGI or WSGI app, and {type(app).__name__} is not callable"
            )
        if self.interface is not None:
            _check_fits(app, self.interface)
        interface = self.interface or detect_interface(app)
        self.check_interface(interface)
        # Imported here, one way: an ASGI app never loads the WSGI driver.
        if interface == "asgi":
            from .asgi import SessionMiddleware

            return SessionMiddleware(app, config=self)
        from .wsgi import WSGISessionMiddleware

        return WSGISessionMiddleware(app, config=self)


sessions = SessionConfig
"""`sessions(...)` builds a SessionConfig: the one decorator."""


def _check_fits(app: Any, interface: Interface) -> None:
    """Refuse an app that cannot be what `interface` says: a coroutine function is no WSGI
    app; a WSGI app takes (environ, start_response), an ASGI app (scope, receive, send)."""
    arguments = 2 if interface == "wsgi" else 3
    if interface == "wsgi" and detect_interface(app) == "asgi":
        problem = "it is a coroutine function, so an ASGI app"
    elif not _takes(app, arguments):
        problem = f"it does not take {arguments} arguments"
    else:
        return
    raise ConfigurationError(
        f"interface={interface!r} does not fit the app: {problem}; leave interface out to detect it"
    )


def _takes(app: Any, arguments: int) -> bool:
    try:
        inspect.signature(app).bind(*([None] * arguments))
    except TypeError:
        return False
    except ValueError:  # no signature to read: trust the setting
        return True
    return True


def detect_interface(app: Any) -> Interface:
    """'asgi' when calling the app gives a coroutine, else 'wsgi'."""
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else type(app).__call__
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app):
        return "asgi"
    return "wsgi"


__all__ = [
    "DEFAULT_REDIS_URL",
    "RedisClient",
    "SessionConfig",
    "Settings",
    "detect_interface",
    "is_async_client",
    "sessions",
]
