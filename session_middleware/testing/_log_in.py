"""Log a test client in: a real session, written by the code the middleware runs at a
login, and its signed cookie put in the client's cookie jar."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import Any

from .._configuration import Configuration
from .._core.lifecycle import Core
from .._core.steps import Step
from .._middleware import ConfiguredMiddleware
from .._protocol.key_layout import UserId

USER_AGENT = "session_middleware.testing"
CLIENT_IP = "127.0.0.1"
_NO_CONFIG = (
    "pass config=, the SessionConfig of the app under test (it is found on its own only "
    "for an app wrapped by the configuration, or a Flask app given it by init_app)"
)


def log_in(
    client: Any,
    user_id: UserId,
    data: Mapping[str, Any] | None = None,
    *,
    config: Configuration | None = None,
) -> str:
    """Log ``client`` in as ``user_id``, with ``data`` in its session; return the
    session's handle (as ``list_sessions`` shows it).

    The session is stored as a login in a request would store it (a new session id,
    stamped with the user's epoch, created if the user has none; a ``login`` event), and
    its signed cookie is set on the client: Starlette's ``TestClient``, an httpx
    ``Client`` or ``AsyncClient`` with a ``base_url``, or Flask's test client.
    ``config`` is the app's configuration; it can be left out when the client's app is
    the one ``config(app)`` returned, or a Flask app given it by ``init_app``.
    """
    app = _app_of(client)
    if config is None and _is_flask(app):
        set_cookie, handle = _flask_log_in(app, user_id, data or {})
    else:
        config = config or _config_of(app)
        set_cookie, handle = config.run_sync(_logged_in(config.core, user_id, data or {}))
    _put_cookie(client, set_cookie)
    return handle


async def alog_in(
    client: Any,
    user_id: UserId,
    data: Mapping[str, Any] | None = None,
    *,
    config: Configuration | None = None,
) -> str:
    """The async twin of ``log_in``, for an ``httpx.AsyncClient`` or a configuration
    whose Redis client (or SQL engine) is async only."""
    app = _app_of(client)
    if config is None and _is_flask(app):
        return log_in(client, user_id, data)
    config = config or _config_of(app)
    set_cookie: str
    handle: str
    set_cookie, handle = await config.run_async(_logged_in(config.core, user_id, data or {}))
    _put_cookie(client, set_cookie)
    return handle


def _logged_in(core: Core, user_id: UserId, data: Mapping[str, Any]) -> Step[tuple[str, str]]:
    now = time.time()
    opened = yield from core.open(None, now, lambda: (USER_AGENT, CLIENT_IP))
    opened.session.update(data)
    opened.session.login(user_id)
    committed = yield from core.commit(opened, now)
    handles = [event.handle for event in committed.events if event.kind == "login"]
    if committed.set_cookie is None or not handles or handles[0] is None:
        raise RuntimeError(f"the login of {user_id!r} was refused")
    return committed.set_cookie, handles[0]


def _flask_log_in(app: Any, user_id: UserId, data: Mapping[str, Any]) -> tuple[str, str]:
    """Through the app's own session interface, as a request of the app would."""
    from flask import request

    interface = app.session_interface
    environ = {"REMOTE_ADDR": CLIENT_IP, "HTTP_USER_AGENT": USER_AGENT}
    with app.test_request_context(environ_base=environ):
        session = interface.open_session(app, request)
        session.update(data)
        session.login(user_id)
        if interface.user_key is not None and getattr(app, "login_manager", None) is not None:
            # What Flask-Login's login_user() leaves in the session.
            session[interface.user_key] = str(user_id)
            session.setdefault("_fresh", True)
        response = app.response_class()
        interface.save_session(app, session, response)
        codec = interface.config.core.codec
        for header in response.headers.getlist("Set-Cookie"):
            ref = codec.find(header.split(";", 1)[0])
            if ref is not None:
                return header, ref.handle
    raise RuntimeError(f"the login of {user_id!r} was refused")


def _app_of(client: Any) -> Any:
    """The app a test client drives: Flask's ``application``, Starlette's ``app``, or the
    app of an httpx client's ASGI or WSGI transport."""
    for holder in (client, getattr(client, "_transport", None)):
        for name in ("application", "app"):
            app = getattr(holder, name, None)
            if app is not None:
                return app
    return None


def _is_flask(app: Any) -> bool:
    if not hasattr(app, "test_request_context"):
        return False
    from ..flask import RedisSessionInterface

    return isinstance(getattr(app, "session_interface", None), RedisSessionInterface)


def _config_of(app: Any) -> Configuration:
    if isinstance(app, ConfiguredMiddleware):
        return app.config
    for middleware in getattr(app, "user_middleware", ()):  # Starlette's add_middleware
        config = getattr(middleware, "kwargs", {}).get("config")
        if isinstance(config, Configuration):
            return config
    raise TypeError(_NO_CONFIG)


def _put_cookie(client: Any, set_cookie: str) -> None:
    if hasattr(client, "base_url") and hasattr(client, "cookies"):  # httpx, Starlette
        if not str(client.base_url):
            raise TypeError("give the httpx client a base_url, e.g. http://testserver")
        # httpx, or the fork a Starlette TestClient may be built on: the client's own.
        httpx = sys.modules[type(client.cookies).__module__.partition(".")[0]]
        request = httpx.Request("GET", client.base_url)
        response = httpx.Response(200, headers=[("set-cookie", set_cookie)], request=request)
        client.cookies.extract_cookies(response)
    elif hasattr(client, "set_cookie"):  # Werkzeug's, and so Flask's, test client
        morsel = next(iter(SimpleCookie(set_cookie).values()))
        client.set_cookie(
            morsel.key,
            morsel.value,
            domain=morsel["domain"] or "localhost",
            path=morsel["path"] or "/",
        )
    else:
        raise TypeError(f"cannot set a cookie on a {type(client).__name__}")
