"""Flask's own settings under init_app: where each cookie attribute comes from, how long a
session lives on the server, Flask-Session's SESSION_PERMANENT, apps held weakly, an app
without a key, and Flask 3.0's session interface.

Real Flask apps against the real Redis, over httpx.WSGITransport. Time is moved forward
by the clock the integration reads, never waited for.
"""

from __future__ import annotations

import datetime
import gc
import time
import weakref
from email.utils import parsedate_to_datetime
from typing import Any

import flask
import pytest
import redis
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from session_middleware import SessionConfig, _flask_cookie, get_session, sessions
from session_middleware import flask as flask_integration
from session_middleware.errors import ConfigurationError
from session_middleware.flask import init_app

from .support import REDIS_URL, SECRET
from .support.clock import Clock, clock_of
from .support.stored import record_key
from .test_flask_native import FLASK_SECRET, browser, make_app, set_cookie

HOUR = 3600


def configured(key_prefix: str, **keywords: Any) -> SessionConfig:
    return sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, **keywords)


def attributes(header: str) -> dict[str, str]:
    """A Set-Cookie header's attributes, names in lower case ('' for a flag)."""
    pairs = (part.strip().partition("=") for part in header.split(";")[1:])
    return {name.lower(): value for name, _, value in pairs}


def warnings(caplog: pytest.LogCaptureFixture, words: str) -> int:
    return sum(1 for r in caplog.records if r.levelname == "WARNING" and words in r.getMessage())


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The clock the Flask integration reads, moved forward by hand."""
    return clock_of(monkeypatch, flask_integration)


# -- where each cookie attribute comes from ----------------------------------------------------


def test_cookie_settings_given_to_sessions_are_used(key_prefix: str) -> None:
    config = configured(key_prefix, https_only=True, same_site="strict", domain="example.com")
    with browser(make_app(config)) as client:
        cookie = attributes(set_cookie(client.post("/put?key=a&value=1")))
    assert "secure" in cookie, "https_only=True: Secure, as docs/security.md promises"
    assert cookie["samesite"] == "Strict"
    assert cookie["domain"] == "example.com"
    assert "httponly" in cookie


def test_flasks_settings_apply_where_sessions_gives_none(key_prefix: str) -> None:
    app = make_app(configured(key_prefix))
    app.config.update(
        SESSION_COOKIE_NAME="shop",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH="/",
    )
    with browser(app) as client:
        header = set_cookie(client.post("/put?key=a&value=1"))
    assert header.startswith("shop=")
    cookie = attributes(header)
    assert "secure" in cookie and cookie["samesite"] == "Strict"


def test_an_argument_wins_over_flasks_setting_and_the_conflict_is_logged_once(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="session_middleware")
    config = configured(key_prefix, same_site="strict", session_cookie="sid")
    app = make_app(config)
    app.config.update(SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_NAME="flask_sid")
    with browser(app) as client:
        headers = [set_cookie(client.post(f"/put?key=n&value={n}")) for n in range(3)]
    assert all(header.startswith("sid=") for header in headers)
    assert all(attributes(header)["samesite"] == "Strict" for header in headers)
    assert warnings(caplog, "SESSION_COOKIE_SAMESITE") == 1
    assert warnings(caplog, "SESSION_COOKIE_NAME") == 1


def test_a_setting_equal_on_both_sides_is_no_conflict(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="session_middleware")
    app = make_app(configured(key_prefix, same_site="strict"))
    app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    with browser(app) as client:
        client.post("/put?key=a&value=1")
    assert warnings(caplog, "differ") == 0


def test_a_prefixed_name_needs_secure_in_the_settings_in_force(key_prefix: str) -> None:
    config = configured(key_prefix)
    app = flask.Flask(__name__)
    app.secret_key = FLASK_SECRET
    app.config["SESSION_COOKIE_NAME"] = "__Host-sid"
    with pytest.raises(ConfigurationError, match="__Host-"):
        init_app(app, config)
    app.config["SESSION_COOKIE_SECURE"] = True
    init_app(app, config)

    @app.post("/put")
    def put() -> Any:
        flask.session["a"] = 1
        return {}

    with browser(app) as client:
        header = set_cookie(client.post("/put"))
    assert header.startswith("__Host-sid=") and "secure" in attributes(header)

    app.config["SESSION_COOKIE_DOMAIN"] = "example.com"  # set after init_app: the next request
    app.testing = True
    with pytest.raises(ConfigurationError, match="__Host-"):
        app.test_client().post("/put")


@pytest.mark.parametrize("named_by", ["sessions", "flask"])
def test_https_only_given_to_sessions_serves_a_secure_prefixed_name(
    key_prefix: str, named_by: str
) -> None:
    if named_by == "sessions":
        app = make_app(configured(key_prefix, https_only=True, session_cookie="__Host-sid"))
    else:
        app = make_app(configured(key_prefix, https_only=True))
        app.config["SESSION_COOKIE_NAME"] = "__Host-sid"
    with browser(app) as client:
        header = set_cookie(client.post("/put?key=a&value=1"))
    assert header.startswith("__Host-sid=") and "secure" in attributes(header)


def test_two_apps_on_one_domain_keep_their_own_sessions(key_prefix: str) -> None:
    config = configured(key_prefix)
    first, second = make_app(config), make_app(config)
    first.config["SESSION_COOKIE_NAME"] = "first"
    second.config["SESSION_COOKIE_NAME"] = "second"
    both = DispatcherMiddleware(flask.Flask(__name__), {"/first": first, "/second": second})
    with browser(both) as client:  # type: ignore[arg-type]
        client.post("/first/login/alice")
        client.post("/second/login/bob")
        assert client.get("/first/state").json()["user"] == "alice"
        assert client.get("/second/state").json()["user"] == "bob"
        assert set(client.cookies.keys()) == {"first", "second"}


# -- how long a session lives on the server ----------------------------------------------------


def record_pttl(config: SessionConfig, cookie: str) -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(client.pttl(record_key(config, cookie)))
    finally:
        client.close()


@pytest.mark.parametrize("permanent", [True, False])
def test_a_copied_cookie_ends_with_the_flask_lifetime(
    config: SessionConfig, clock: Clock, permanent: bool
) -> None:
    app = make_app(config)
    app.config["PERMANENT_SESSION_LIFETIME"] = datetime.timedelta(hours=1)
    with browser(app) as client:
        if permanent:
            client.post("/permanent")
        client.post("/login/alice")
        cookie = client.cookies["session"]
    assert 0 < record_pttl(config, cookie) <= HOUR * 1000, "the record lives an hour, not 14 days"

    clock.offset = HOUR + 60
    with browser(app, {"session": cookie}) as thief:
        state = thief.get("/state").json()
    assert state["user"] is None and state["data"] == {}


@pytest.mark.parametrize("permanent", [True, False])
def test_a_session_in_use_outlives_the_flask_lifetime(
    config: SessionConfig, clock: Clock, permanent: bool
) -> None:
    app = make_app(config)
    app.config["PERMANENT_SESSION_LIFETIME"] = HOUR
    with browser(app) as client:
        if permanent:
            client.post("/permanent")
        client.post("/login/alice")
        for minutes in (50, 100, 150):
            clock.offset = minutes * 60
            response = client.get("/state")
            assert response.json()["user"] == "alice", minutes
            if permanent:  # the cookie follows the session's end on the server
                expires = parsedate_to_datetime(attributes(set_cookie(response))["expires"])
                server_end = time.time() + clock.offset + HOUR
                assert expires.timestamp() <= server_end + 1
        assert record_pttl(config, client.cookies["session"]) <= HOUR * 1000


# -- SESSION_PERMANENT and SESSION_REFRESH_EACH_REQUEST (Flask-Session's) ---------------------


@pytest.mark.parametrize(
    ("settings", "permanent"),
    [
        ({"SESSION_PERMANENT": True}, True),
        ({"SESSION_PERMANENT": False}, False),
        ({"SESSION_TYPE": "redis"}, True),  # Flask-Session's configuration: its default
        ({"SESSION_TYPE": "redis", "SESSION_PERMANENT": False}, False),
        ({}, False),  # Flask's default
    ],
)
def test_session_permanent_sets_what_a_new_session_is(
    config: SessionConfig, settings: dict[str, Any], permanent: bool
) -> None:
    app = make_app(config)
    app.config.update(settings)
    with browser(app) as client:
        assert "set-cookie" not in client.get("/state").headers, "nothing stored, no cookie"
        header = set_cookie(client.post("/put?key=a&value=1"))
        assert ("expires" in attributes(header)) is permanent
        assert client.get("/state").json()["permanent"] is permanent


def test_without_refresh_each_request_the_cookie_follows_the_server(
    config: SessionConfig, clock: Clock
) -> None:
    app = make_app(config)
    app.config.update(
        SESSION_PERMANENT=True, SESSION_REFRESH_EACH_REQUEST=False, PERMANENT_SESSION_LIFETIME=HOUR
    )
    with browser(app) as client:
        assert "expires" in attributes(set_cookie(client.post("/put?key=a&value=1")))
        client.get("/state")  # Flask-Login's session protection marks the session once
        assert "set-cookie" not in client.get("/state").headers, "a read sends no cookie"
        clock.offset = 10 * 60  # the server records the session's use, extending its life
        assert "expires" in attributes(set_cookie(client.get("/state")))
        assert "set-cookie" not in client.get("/state").headers


def test_logging_out_of_a_permanent_session_leaves_nothing_stored(
    config: SessionConfig, key_prefix: str
) -> None:
    from .support.stored import session_keys

    app = make_app(config)
    app.config["SESSION_PERMANENT"] = True
    with browser(app) as client:
        client.post("/login/alice")
        client.post("/logout")
    assert session_keys(key_prefix) == []


# -- the app's lifetime, and an app without a key ------------------------------------------------


def test_init_app_leaves_the_app_free_to_go(config: SessionConfig) -> None:
    gc.collect()
    listening = len(config.listeners._listeners)
    gc.disable()  # as Flask's test_app_freed_on_zero_refcount: freed by its refcount alone
    try:
        app = flask.Flask(__name__)
        init_app(app, config)
        freed = weakref.ref(app)
        del app
        assert freed() is None
    finally:
        gc.enable()
    for _ in range(5):
        init_app(flask.Flask(__name__), config)
    gc.collect()
    assert len(config.listeners._listeners) == listening, "no listener outlives its app"


def test_session_event_is_sent_with_the_app(config: SessionConfig) -> None:
    received: list[Any] = []
    app = make_app(config)

    def audit(sender: Any, event: Any) -> None:
        received.append((sender, event.kind))

    flask_integration.session_event.connect(audit, app)
    with browser(app) as client:
        client.post("/login/alice")
    assert received == [(app, "login")]


def test_an_app_without_a_key_names_the_cause(key_prefix: str) -> None:
    app = flask.Flask(__name__)
    init_app(app, sessions(redis_url=REDIS_URL, key_prefix=key_prefix))

    @app.get("/who")
    def who() -> Any:
        try:
            get_session(flask.request)
        except LookupError as error:
            return {"error": str(error)}
        return {"error": None}

    with browser(app) as client:
        message = client.get("/who").json()["error"]
    assert "secret key" in message and "app.secret_key" in message
    assert "wrap the app" not in message


# -- Flask 3.0 ------------------------------------------------------------------------------------


def test_a_session_interface_without_flask_31s_partitioned_cookies(
    config: SessionConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on Flask 3.0: no get_cookie_partitioned, no SESSION_COOKIE_PARTITIONED."""
    monkeypatch.delattr(flask.sessions.SessionInterface, "get_cookie_partitioned", raising=False)
    app = make_app(config)
    app.config.pop("SESSION_COOKIE_PARTITIONED", None)
    with browser(app) as client:
        response = client.post("/login/alice")
        assert response.status_code == 200
        assert "partitioned" not in attributes(set_cookie(response))
        assert client.get("/state").json()["user"] == "alice"


def test_partitioned_cookies_need_a_werkzeug_that_renders_them(
    key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_flask_cookie, "_CAN_PARTITION", False)
    app = flask.Flask(__name__)
    app.secret_key = FLASK_SECRET
    with pytest.raises(ConfigurationError, match=r"Werkzeug 3\.1"):
        init_app(app, configured(key_prefix, https_only=True, partitioned=True))
