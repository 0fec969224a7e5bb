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
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import flask
from blinker import Namespace
from flask import Flask, Request, Response
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SecureCookieSessionInterface, SessionInterface, SessionMixin
from werkzeug.exceptions import ServiceUnavailable

from . import _fail_closed as unavailable
from ._cookies import CookieUpdate
from ._core.lifecycle import Opened
from ._redis.key_layout import UserId, user_id_text
from ._request_session import REJECTED_KEY, SESSION_KEY
from .config import SessionConfig
from .errors import ConfigurationError
from .events import SessionEvent
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
    ) -> None:
        super().__init__(data, user_id, max_value_bytes=max_value_bytes)
        self._opened = opened
        self._user_key = user_key
        self._imported = False
        self._was_permanent = bool(dict.get(self, PERMANENT_KEY, False))
        self._was_followed = (
            user_id is not None and user_key is not None and dict.__contains__(self, user_key)
        )
        self.new = opened is None or opened.record is None

    def logout_others(self) -> None:
        self._follow()
        super().logout_others()

    def _storable(self, value: Any) -> Any:
        # Flask's tags: what flask.session can hold (tuples, bytes, Markup, UUID,
        # datetime) comes back as it went in, as with Flask's own cookie sessions.
        if value is None or type(value) in (str, int, float, bool):
            return value
        return _TAGS.tag(value)

    def _follow(self) -> None:
        """Follow the login key (Flask-Login's): set, it binds the session to that user;
        removed, it ends the logged-in session and carries what else it held into a new
        anonymous one."""
        if self._user_key is None:
            return
        value = dict.get(self, self._user_key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            bound = self.pending_login if self.pending_login is not None else self.user_id
            if bound is None or user_id_text(bound) != user_id_text(value):
                data = dict(dict.items(self))
                self.login(value)
                if not dict.__len__(self):  # login() empties a session that changes hands
                    self.update(data)
        elif self._was_followed and self.user_id is not None and not self.ended:
            remaining = dict(dict.items(self))
            self.logout()
            self.update(remaining)


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
        self._fail_open = not unavailable.answers_503(config.on_redis_error)
        self._warned_httponly = False

    def open_session(self, app: Flask, request: Request) -> FlaskSession | None:
        """The request's session; None (Flask's null session) when there is no key."""
        if self.config.secret_keys.current() is None:
            return None
        core = self.config.core
        environ = request.environ
        try:
            step = core.open(
                environ.get("HTTP_COOKIE"),
                time.time(),
                lambda: (environ.get("HTTP_USER_AGENT"), environ.get("REMOTE_ADDR")),
            )
            opened = self.config.run_sync(step)
        except unavailable.FAILURES:
            if self._fail_open:
                raise
            environ[UNAVAILABLE_KEY] = True
            session = FlaskSession()
            session.freeze(_UNAVAILABLE)
            return session
        session = FlaskSession(
            _untagged(opened.record.data) if opened.record is not None else {},
            opened.session.user_id,
            opened=opened,
            user_key=self.user_key,
            max_value_bytes=core.max_bytes,
        )
        session.handle = opened.session.handle
        opened.session = session
        if opened.ref is None and self.import_cookie_sessions:
            self._import(app, request, session)
        environ[SESSION_KEY] = session
        if opened.rejected is not None:
            environ[REJECTED_KEY] = opened.rejected
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Save as Flask's own interface does, the cookie built from Flask's settings
        (``SESSION_COOKIE_DOMAIN``, ``_PATH`` or ``APPLICATION_ROOT``, ``_SECURE``,
        ``_SAMESITE`` (Lax when None), ``_PARTITIONED``, ``_HTTPONLY``,
        ``PERMANENT_SESSION_LIFETIME``, ``SESSION_REFRESH_EACH_REQUEST``); the name is the
        configuration's ``session_cookie``."""
        if not isinstance(session, FlaskSession) or session._opened is None:
            return
        opened = session._opened
        session._follow()
        now = time.time()
        try:
            committed = self.config.run_sync(self.config.core.commit(opened, now))
        except unavailable.FAILURES:
            if self._fail_open:
                raise
            _refuse(response)
            return
        session._opened = None  # saved: later changes are lost, as with Flask's own sessions
        if committed.depends_on_session or session.accessed:
            response.vary.add("Cookie")
        cookie = committed.cookie
        if cookie is None and not session.ended and opened.ref is not None:
            permanent_changed = _permanent(session) != session._was_permanent
            if permanent_changed or self.should_set_cookie(app, session):
                cookie = self._same_cookie(opened, now)
        if cookie is not None:
            self._set_cookie(app, session, response, cookie)
        if session._imported and app.config["SESSION_COOKIE_NAME"] != self.config.core.codec.name:
            response.delete_cookie(
                app.config["SESSION_COOKIE_NAME"],
                domain=self.get_cookie_domain(app),
                path=self.get_cookie_path(app),
            )

    def should_set_cookie(self, app: Flask, session: SessionMixin) -> bool:
        """Besides a change: a permanent session's cookie on every request, as Flask does
        with ``SESSION_REFRESH_EACH_REQUEST`` (the default)."""
        return _permanent(session) and bool(app.config["SESSION_REFRESH_EACH_REQUEST"])

    def _set_cookie(
        self, app: Flask, session: FlaskSession, response: Response, cookie: CookieUpdate
    ) -> None:
        # The name is the configuration's (session_cookie, "session" as Flask's by default),
        # so that a cookie session of Flask's own under SESSION_COOKIE_NAME can be imported.
        name, domain, path = (
            self.config.core.codec.name,
            self.get_cookie_domain(app),
            self.get_cookie_path(app),
        )
        attributes: dict[str, Any] = {
            "domain": domain,
            "path": path,
            "secure": self.get_cookie_secure(app),
            "partitioned": self.get_cookie_partitioned(app),
            # SameSite as Flask's setting says; Lax where it says nothing (Flask's default).
            "samesite": self.get_cookie_samesite(app) or "Lax",
            "httponly": self.cookie_httponly(app),
        }
        if cookie.value is None:
            response.delete_cookie(name, **attributes)
        else:
            # Flask's expiry for a permanent session (PERMANENT_SESSION_LIFETIME); the
            # server still ends the session max_age after its login, whatever the cookie.
            expires = self.get_expiration_time(app, session) if _permanent(session) else None
            response.set_cookie(name, cookie.value, expires=expires, **attributes)
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

    def _same_cookie(self, opened: Opened, now: float) -> CookieUpdate | None:
        """The current session's cookie again, to change only how long it lasts."""
        if opened.ref is None or opened.record is None:
            return None
        left = self.config.core.timing.seconds_left(opened.record, now)
        return self.config.core.codec.issue(opened.ref, left)

    def _import(self, app: Flask, request: Request, session: FlaskSession) -> None:
        legacy = SecureCookieSessionInterface().open_session(app, request)
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
    answer 503 to a request whose session cannot be read because Redis is unreachable."""
    interface = RedisSessionInterface(
        config, user_key=user_key, import_cookie_sessions=import_cookie_sessions
    )
    app.session_interface = interface
    interface.cookie_httponly(app)  # warns at start-up when the app turned HttpOnly off
    app.before_request_funcs.setdefault(None, []).insert(0, _refuse_unavailable)

    def signal(event: SessionEvent) -> None:
        session_event.send(app, event=event)

    config.listeners.add(signal)
    return interface


_TAGS = TaggedJSONSerializer()

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


def _untagged(data: dict[str, Any]) -> dict[str, Any]:
    """Values as Flask's tags made them: a tagged object is a dict of one key."""
    return {
        key: _TAGS.loads(json.dumps(value)) if isinstance(value, (dict, list)) else value
        for key, value in data.items()
    }


def _permanent(session: SessionMixin) -> bool:
    """Whether the session is permanent, read without marking it accessed."""
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
    "FlaskSession",
    "RedisSessionInterface",
    "StoreUnavailable",
    "init_app",
    "session_event",
]
