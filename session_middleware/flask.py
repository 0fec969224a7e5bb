"""Flask integration: ``flask.session`` becomes a session kept in Redis.

    from session_middleware import sessions
    from session_middleware.flask import init_app

    init_app(app, sessions(redis_url=...))

``flask.session`` is then a `FlaskSession`: Flask's session API (``permanent``, ``new``,
``modified``) on this package's Session (``login``, ``logout``, ``logout_others``,
``user_id``). Flask-Login needs nothing more: ``login_user()`` binds the session to the
user (new session id, stamped with the user's epoch) and ``logout_user()`` ends it.

The cookie is signed with ``app.secret_key`` (``SECRET_KEY_FALLBACKS`` verify old cookies),
read at each use as Flask reads it, unless ``sessions(secret_key=...)`` gives a key: that
one wins. With neither, ``flask.session`` is Flask's null session, as in Flask.

Each cookie setting comes from ``sessions(...)`` where it was given there, else from
Flask's ``SESSION_COOKIE_*``, else from the default; a conflict is logged once. The server
ends a session no later than its cookie: ``PERMANENT_SESSION_LIFETIME`` after it was last
seen, if that comes before ``max_age`` after its login.
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import flask
from blinker import Namespace
from flask import Flask, Request, Response
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SecureCookieSessionInterface, SessionInterface, SessionMixin
from werkzeug.exceptions import ServiceUnavailable

from . import _fail_closed as unavailable
from ._core.lifecycle import Core, Opened
from ._flask_cookie import CookieResolver, CookieSettings
from ._protocol.cookies import CookieUpdate
from ._protocol.key_layout import UserId
from ._request_cycle import RequestCycle, client_of_environ, follow_login_key, publish
from ._request_session import NO_SESSION_KEY, REJECTED_KEY, SESSION_KEY
from .config import SessionConfig
from .errors import ConfigurationError
from .events import Listeners, SessionEvent
from .session import Session

logger = logging.getLogger("session_middleware")

FLASK_LOGIN_KEY = "_user_id"
PERMANENT_KEY = "_permanent"
UNAVAILABLE_KEY = "session_middleware._fail_closed"

_UNAVAILABLE = "the session store cannot be reached: the session cannot be changed"
_SCRIPTS_CAN_READ = (
    "SESSION_COOKIE_HTTPONLY is False: scripts on the page can read the session cookie, "
    "so a cross-site scripting flaw can steal the session"
)
_NO_SECRET_KEY = (
    "the Flask app has no secret key to sign the session cookie with: set app.secret_key "
    "(SECRET_KEY), or pass secret_key to sessions()"
)


class FlaskSession(Session, SessionMixin):
    """``flask.session``: a Session with Flask's attributes.

    new: True when no stored session was loaded for this request.
    permanent: the ``_permanent`` key, as in Flask. A permanent session's cookie lasts as
        long as the session does on the server; otherwise it is a browser-session cookie
        (the server still ends the session after ``max_age``).
    modified: set by every change; set it by hand after changing a nested value in place.
    """

    __slots__ = ("_imported", "_opened", "_user_key", "_was_followed", "_was_permanent", "new")

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        user_id: UserId | None = None,
        *,
        opened: Opened | None = None,
        user_key: str | None = None,
        max_value_bytes: int | None = None,
        stored: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(data, user_id, max_value_bytes=max_value_bytes, stored=stored)
        self._opened = opened
        self._user_key = user_key
        self._imported = False
        self._was_permanent = bool(self._peek(PERMANENT_KEY, False))
        self._was_followed = (
            user_id is not None and user_key is not None and dict.__contains__(self, user_key)
        )
        self.new = opened is None or opened.record is None

    def __bool__(self) -> bool:
        """False while it holds nothing but whether it is permanent, as Flask-Session's: so
        that Flask-Login treats a new permanent session as the empty one it is."""
        self.accessed = True
        return bool(dict.keys(self) - {PERMANENT_KEY})

    def logout_others(self) -> None:
        self._follow()
        super().logout_others()

    def _storable(self, value: Any) -> Any:
        # Flask's tags: what flask.session can hold (tuples, bytes, Markup, UUID,
        # datetime) comes back as it went in, as with Flask's own cookie sessions.
        if value is None or type(value) in (str, int, float, bool):
            return value
        return _TAGS.tag(value)

    def _loaded(self, value: Any, text: str) -> Any:
        # A tagged object is a dict of one key: Flask's serializer turns it back.
        return _TAGS.loads(text) if isinstance(value, (dict, list)) else value

    def _follow(self) -> None:
        """Follow the login key (Flask-Login's): set, it binds the session to that user;
        removed, it ends the logged-in session and carries what else it held into a new
        anonymous one."""
        if self._user_key is not None:
            follow_login_key(
                self, self._user_key, bound_by_key=self._was_followed, ignored={PERMANENT_KEY}
            )


class StoreUnavailable(ServiceUnavailable):
    """503 for a request whose session could not be read; ``errorhandler(503)`` restyles it."""

    description = unavailable.BODY.decode().strip()

    def get_body(self, environ: Any = None, scope: Any = None) -> str:
        return unavailable.BODY.decode()

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        return unavailable.headers_without_length()


class RedisSessionInterface(SessionInterface):
    """Flask's session interface on a SessionConfig; install it with `init_app`.

    Without ``sessions(secret_key=...)``, the configuration's keys are the app's:
    ``app.secret_key`` signs, ``SECRET_KEY_FALLBACKS`` verify, read at each use.

    user_key: the session key naming the logged-in user (Flask-Login's ``_user_id``);
        None leaves binding to ``session.login()`` alone.
    import_cookie_sessions: adopt a session from Flask's own signed cookie (made with
        ``app.secret_key``) when the request has none of ours, so users stay logged in
        across the switch.
    """

    pickle_based = False

    def __init__(
        self,
        config: SessionConfig,
        *,
        user_key: str | None = FLASK_LOGIN_KEY,
        import_cookie_sessions: bool = False,
    ) -> None:
        config.secret_keys.read_from(_app_secret_keys)
        config.check_interface("wsgi")
        self.config = config
        self.user_key = user_key
        self.import_cookie_sessions = import_cookie_sessions
        self._warned_httponly = False
        self._cookies = CookieResolver(config.core.codec, config.given_settings)
        self._timed: tuple[int, RequestCycle] | None = None

    def open_session(self, app: Flask, request: Request) -> FlaskSession | None:
        """The request's session; None (Flask's null session) when there is no key."""
        settings = self.cookie_settings(app)
        environ = request.environ
        if self.config.secret_keys.current() is None:
            environ[NO_SESSION_KEY] = _NO_SECRET_KEY
            return None
        cycle = self._cycle(app)
        core = cycle.core
        cookie_header = _cookie_header(request, settings.name, core.codec.name)
        opened = cycle.open(cookie_header, client_of_environ(environ), time.time())
        if opened is None:
            environ[UNAVAILABLE_KEY] = True
            session = FlaskSession()
            session.freeze(_UNAVAILABLE)
            return session
        stored = None if opened.record is None else opened.record.stored
        # A new session: permanent or not as SESSION_PERMANENT says.
        data = {PERMANENT_KEY: True} if stored is None and _permanent_by_default(app) else {}
        session = FlaskSession(
            data,
            opened.session.user_id,
            stored=stored,
            opened=opened,
            user_key=self.user_key,
            max_value_bytes=core.max_bytes,
        )
        session.handle = opened.session.handle
        opened.session = session
        if opened.ref is None and self.import_cookie_sessions:
            self._import(app, request, session)
        publish(opened, environ, SESSION_KEY, REJECTED_KEY)
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Save as Flask's own interface does, the cookie built from `cookie_settings`,
        ``SESSION_COOKIE_HTTPONLY``, ``PERMANENT_SESSION_LIFETIME`` and
        ``SESSION_REFRESH_EACH_REQUEST``."""
        if not isinstance(session, FlaskSession) or session._opened is None:
            return
        opened = session._opened
        session._follow()
        if (
            opened.record is None
            and dict.keys(session) <= {PERMANENT_KEY}
            and PERMANENT_KEY not in session._written
        ):  # only SESSION_PERMANENT's mark: nothing to store, as with Flask-Session
            dict.pop(session, PERMANENT_KEY, None)
        cycle = self._cycle(app)
        core = cycle.core
        now = time.time()
        # A write that records activity moves the session's end on the server (when
        # PERMANENT_SESSION_LIFETIME sets one): the cookie then follows.
        extends = (
            opened.record is not None
            and core.timing.sliding
            and core.timing.refresh_due(opened.record, now)
        )
        committed = cycle.commit(opened, frozen=None, now=now)
        if committed is None:
            _refuse(response)
            return
        session._opened = None  # saved: later changes are lost, as with Flask's own sessions
        if committed.depends_on_session or session.accessed:
            response.vary.add("Cookie")
        cookie = committed.cookie
        alive = committed.interrupted is None and not session.ended
        if cookie is None and alive and opened.ref is not None:
            permanent = _permanent(session)
            if (
                permanent != session._was_permanent
                or (permanent and extends)
                or self.should_set_cookie(app, session)
            ):
                cookie = self._same_cookie(core, opened, now)
        if cookie is not None:
            self._set_cookie(app, session, response, cookie)
        if session._imported and app.config["SESSION_COOKIE_NAME"] != self.get_cookie_name(app):
            response.delete_cookie(
                app.config["SESSION_COOKIE_NAME"],
                domain=_FLASK_COOKIES.get_cookie_domain(app),
                path=_FLASK_COOKIES.get_cookie_path(app),
            )

    def should_set_cookie(self, app: Flask, session: SessionMixin) -> bool:
        """Besides a change: a permanent session's cookie on every request, as Flask does
        with ``SESSION_REFRESH_EACH_REQUEST`` (the default)."""
        return _permanent(session) and bool(app.config["SESSION_REFRESH_EACH_REQUEST"])

    # -- which cookie, and how long the session lives -------------------------------------

    def cookie_settings(self, app: Flask) -> CookieSettings:
        """The app's session cookie (see `CookieResolver.settings`), read at each use, as
        Flask reads its settings."""
        return self._cookies.settings(app)

    def get_cookie_name(self, app: Flask) -> str:
        return self.cookie_settings(app).name

    def get_cookie_domain(self, app: Flask) -> str | None:
        return self.cookie_settings(app).domain

    def get_cookie_path(self, app: Flask) -> str:
        return self.cookie_settings(app).path

    def get_cookie_secure(self, app: Flask) -> bool:
        return self.cookie_settings(app).secure

    def get_cookie_samesite(self, app: Flask) -> str:
        return self.cookie_settings(app).same_site

    def get_cookie_partitioned(self, app: Flask) -> bool:
        return self.cookie_settings(app).partitioned

    def core(self, app: Flask) -> Core:
        """The configuration's core, with a session also ending when its cookie would:
        ``PERMANENT_SESSION_LIFETIME`` after it was last seen (its Redis TTL too)."""
        return self._cycle(app).core

    def _cycle(self, app: Flask) -> RequestCycle:
        """The request cycle on `core(app)`, made again when the app's lifetime changes."""
        seconds = int(app.permanent_session_lifetime.total_seconds())
        timed = self._timed
        if timed is None or timed[0] != seconds:
            base = self.config.core
            core = base.with_timing(base.timing.idle_within(seconds))
            timed = (seconds, RequestCycle.of(self.config, core))
            self._timed = timed
        return timed[1]

    # -- the cookie ----------------------------------------------------------------------

    def _set_cookie(
        self, app: Flask, session: FlaskSession, response: Response, cookie: CookieUpdate
    ) -> None:
        settings = self.cookie_settings(app)
        attributes: dict[str, Any] = {
            "domain": settings.domain,
            "path": settings.path,
            "secure": settings.secure,
            "samesite": settings.same_site,
            "httponly": self.cookie_httponly(app),
        }
        if settings.partitioned:
            attributes["partitioned"] = True
        if cookie.value is None:
            response.delete_cookie(settings.name, **attributes)
        else:
            response.set_cookie(
                settings.name, cookie.value, expires=_expires(app, session), **attributes
            )
        if "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        response.vary.add("Cookie")

    def cookie_httponly(self, app: Flask) -> bool:
        """``SESSION_COOKIE_HTTPONLY``, as Flask reads it; off, a warning is logged once."""
        httponly = self.get_cookie_httponly(app)
        if not httponly and not self._warned_httponly:
            self._warned_httponly = True
            logger.warning(_SCRIPTS_CAN_READ)
        return httponly

    @staticmethod
    def _same_cookie(core: Core, opened: Opened, now: float) -> CookieUpdate | None:
        """The current session's cookie again, to change only how long it lasts."""
        if opened.ref is None or opened.record is None:
            return None
        return core.codec.issue(opened.ref, core.timing.seconds_left(opened.record, now))

    def _import(self, app: Flask, request: Request, session: FlaskSession) -> None:
        legacy = _FLASK_COOKIES.open_session(app, request)
        if not legacy:
            return
        dropped = session.adopt(legacy)
        if dropped:
            logger.warning(
                "imported a Flask session, leaving out %d value(s) JSON cannot hold", dropped
            )
        session._imported = True


def init_app(
    app: Flask,
    config: SessionConfig,
    *,
    user_key: str | None = FLASK_LOGIN_KEY,
    import_cookie_sessions: bool = False,
) -> RedisSessionInterface:
    """Make ``flask.session`` a session of ``config`` (see RedisSessionInterface), and
    answer 503 to a request whose session cannot be read because Redis is unreachable.

    ConfigurationError now if the app's cookie settings make a cookie browsers would drop
    (see `RedisSessionInterface.cookie_settings`); settings changed later are checked at
    the next request. The app is held weakly: it is freed as if init_app had not run."""
    interface = RedisSessionInterface(
        config, user_key=user_key, import_cookie_sessions=import_cookie_sessions
    )
    interface.cookie_settings(app)
    app.session_interface = interface
    interface.cookie_httponly(app)  # warns at start-up when the app turned HttpOnly off
    app.before_request_funcs.setdefault(None, []).insert(0, _refuse_unavailable)
    signal = _AppSignal(app)
    config.listeners.add(signal)
    weakref.finalize(app, _stop_listening, config.listeners, signal)
    return interface


class _AppSignal:
    """Sends `session_event` with the app, held weakly, for each event of its configuration."""

    __slots__ = ("_app",)

    def __init__(self, app: Flask) -> None:
        self._app = weakref.ref(app)

    def __call__(self, event: SessionEvent) -> None:
        app = self._app()
        if app is not None:
            session_event.send(app, event=event)


def _stop_listening(listeners: Listeners, signal: _AppSignal) -> None:
    with contextlib.suppress(ValueError):
        listeners.remove(signal)


_TAGS = TaggedJSONSerializer()
_FLASK_COOKIES = SecureCookieSessionInterface()  # Flask's own, to import its cookies

#: A Flask signal (blinker) sent with the app for every SessionEvent of the configuration
#: given to init_app: ``session_event.connect(audit, app)``; ``audit(app, event)``.
session_event = Namespace().signal("session-event")


def _app_secret_keys() -> Sequence[str | bytes] | None:
    """The app's keys, as Flask's own cookie sessions use them: ``app.secret_key`` signs,
    ``SECRET_KEY_FALLBACKS`` verify; None without ``app.secret_key``."""
    if not flask.has_app_context():
        raise ConfigurationError(
            "this configuration signs with app.secret_key: use it inside an app context "
            "(with app.app_context(): ...), or give sessions(secret_key=...)"
        )
    app = flask.current_app
    if not app.secret_key:
        return None
    fallbacks = app.config.get("SECRET_KEY_FALLBACKS") or ()
    return [app.secret_key, *(key for key in fallbacks if key)]


def _cookie_header(request: Request, name: str, codec_name: str) -> str | None:
    """The Cookie header, as the codec reads it: only the cookies named `name`."""
    header: str | None = request.environ.get("HTTP_COOKIE")
    if name == codec_name or not header:
        return header
    return "; ".join(f"{codec_name}={value}" for value in request.cookies.getlist(name))


def _expires(app: Flask, session: SessionMixin) -> datetime | None:
    """As Flask's: a permanent session's cookie expires ``PERMANENT_SESSION_LIFETIME`` from
    now (the server may end the session before: see RedisSessionInterface.core); any other
    lasts the browser session."""
    if not _permanent(session):
        return None
    seconds = app.permanent_session_lifetime.total_seconds()
    return datetime.fromtimestamp(time.time() + seconds, timezone.utc)


def _permanent_by_default(app: Flask) -> bool:
    """Whether a new session is permanent: ``SESSION_PERMANENT`` (Flask-Session's setting);
    unset, True under Flask-Session's configuration (``SESSION_TYPE``), as Flask-Session
    makes them, else False, as Flask does."""
    return bool(app.config.get("SESSION_PERMANENT", "SESSION_TYPE" in app.config))


def _permanent(session: SessionMixin) -> bool:
    """Whether the session is permanent, read without marking it accessed."""
    if isinstance(session, FlaskSession):
        return bool(session._peek(PERMANENT_KEY, False))
    return bool(dict.get(session, PERMANENT_KEY, False))  # type: ignore[call-overload]


def _refuse_unavailable() -> None:
    if flask.request.environ.get(UNAVAILABLE_KEY):
        raise StoreUnavailable()


def _refuse(response: Response) -> None:
    """Turn the response into the 503 the drivers send when a session cannot be saved."""
    response.status_code = unavailable.STATUS
    response.headers.clear()
    for name, value in unavailable.headers_without_length():
        response.headers[name] = value
    response.set_data(unavailable.BODY)


__all__ = [
    "FLASK_LOGIN_KEY",
    "CookieSettings",
    "FlaskSession",
    "RedisSessionInterface",
    "StoreUnavailable",
    "init_app",
    "session_event",
]
