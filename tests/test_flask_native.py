"""The Flask integration: flask.session is our session, Flask-Login works unchanged.

Real Flask apps with Flask-Login against the real Redis, over httpx.WSGITransport and
Flask's own test client.
"""

from __future__ import annotations

import datetime
from typing import Any

import flask
import httpx
import pytest
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user

from session_middleware import Session, SessionConfig, get_session, sessions
from session_middleware._fail_closed import BODY
from session_middleware._request_session import REJECTED_KEY
from session_middleware.errors import ConfigurationError
from session_middleware.flask import FlaskSession, init_app

from .support import OTHER_SECRET, REDIS_URL, SECRET, keys_under
from .support.counting import Counter, counted_sync_client
from .support.stored import session_keys

FLASK_SECRET = "flask-own-secret-key-0123456789abcdefgh"
BASE_URL = "http://testserver"


class User(UserMixin):
    def __init__(self, name: str) -> None:
        self.id = name


def make_app(config: SessionConfig | None, **options: Any) -> flask.Flask:
    """A Flask app with Flask-Login; `config` None keeps Flask's own cookie sessions."""
    app = flask.Flask(__name__)
    app.secret_key = FLASK_SECRET
    if config is not None:
        init_app(app, config, **options)
    LoginManager(app).user_loader(User)

    @app.get("/state")
    def state() -> Any:
        session = flask.session
        flags = {"new": session.new, "modified": session.modified}  # before Flask-Login runs
        return {
            **flags,
            "user": current_user.get_id() if current_user.is_authenticated else None,
            "bound": getattr(session, "user_id", None),
            "permanent": session.permanent,
            "rejected": flask.request.environ.get(REJECTED_KEY),
            "data": {k: v for k, v in session.items() if not k.startswith("_")},
        }

    @app.post("/put")
    def put() -> Any:
        flask.session[flask.request.args["key"]] = flask.request.args["value"]
        return {"modified": flask.session.modified, "new": flask.session.new}

    @app.post("/put-date")
    def put_date() -> Any:
        flask.session["when"] = datetime.datetime.now()
        return {}

    @app.post("/permanent")
    def permanent() -> Any:
        flask.session.permanent = True
        return {}

    @app.post("/login/<name>")
    def login(name: str) -> Any:
        login_user(User(name))
        return {"user": name}

    @app.post("/logout")
    def logout() -> Any:
        logout_user()
        return {"user": None}

    @app.post("/logout-others")
    def logout_others() -> Any:
        flask.session.logout_others()
        return {}

    @app.post("/flash")
    def flash() -> Any:
        flask.flash("saved", "info")
        return {}

    @app.get("/flashes")
    def flashes() -> Any:
        return {"flashes": flask.get_flashed_messages(with_categories=True)}

    @app.get("/which")
    def which() -> Any:
        session = flask.session._get_current_object()  # type: ignore[attr-defined]
        return {
            "ours": isinstance(session, Session) and isinstance(session, FlaskSession),
            "get_session": get_session(flask.request) is session,
        }

    return app


def browser(app: flask.Flask, cookies: dict[str, str] | None = None) -> httpx.Client:
    transport = httpx.WSGITransport(app=app)
    return httpx.Client(transport=transport, base_url=BASE_URL, cookies=cookies)


def set_cookie(response: httpx.Response) -> str:
    headers = response.headers.get_list("set-cookie")
    assert len(headers) == 1, headers
    return headers[0]


# -- flask.session ------------------------------------------------------------------------


def test_flask_session_is_ours_with_flasks_attributes(config: SessionConfig) -> None:
    app = make_app(config)
    client = app.test_client()
    assert client.get("/which").json == {"ours": True, "get_session": True}

    first = client.get("/state")
    assert first.json["new"] is True and first.json["modified"] is False
    assert "set-cookie" not in first.headers, "nothing stored, no cookie"
    assert "Cookie" in first.headers["vary"]

    put = client.post("/put?key=cart&value=apples")
    assert put.json == {"modified": True, "new": True}
    cookie = client.get_cookie("session")
    assert cookie is not None and config.core.codec.decode(cookie.value) is not None
    header = put.headers["set-cookie"]
    assert "Expires" not in header and "HttpOnly" in header, "not permanent: a browser cookie"

    again = client.get("/state").json
    assert again["new"] is False and again["modified"] is False
    assert again["data"] == {"cart": "apples"}


def test_flash_messages(config: SessionConfig) -> None:
    with browser(make_app(config)) as client:
        client.post("/flash")
        assert client.get("/flashes").json() == {"flashes": [["info", "saved"]]}
        assert client.get("/flashes").json() == {"flashes": []}


def test_permanent_sessions_keep_their_cookie(config: SessionConfig, key_prefix: str) -> None:
    with browser(make_app(config)) as client:
        client.post("/put?key=a&value=1")
        value = client.cookies["session"]
        response = client.post("/permanent")
        header = set_cookie(response)
        assert header.startswith(f"session={value};"), "the same session, only a longer cookie"
        assert "Expires=" in header
        assert client.get("/state").json()["permanent"] is True
        refreshed = set_cookie(client.get("/state"))  # SESSION_REFRESH_EACH_REQUEST, as Flask
        assert refreshed.startswith(f"session={value};") and "Expires=" in refreshed

        client.cookies.clear()
        header = set_cookie(client.post("/permanent"))
        assert "Expires=" in header, "a new permanent session gets a lasting cookie at once"
    assert len(session_keys(key_prefix)) == 2

    app = make_app(config)
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False
    with browser(app) as client:
        client.post("/permanent")
        assert "set-cookie" not in client.get("/which").headers


def test_flasks_cookie_settings_are_honoured(config: SessionConfig) -> None:
    app = make_app(config)
    app.config.update(
        SESSION_COOKIE_DOMAIN=".example.com",
        SESSION_COOKIE_PATH="/app",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_SAMESITE="Strict",
    )
    with browser(app) as client:
        header = set_cookie(client.post("/put?key=a&value=1")).lower()
    for attribute in ("domain=example.com", "path=/app", "secure", "samesite=strict", "httponly"):
        assert attribute in header


def _warnings(caplog: pytest.LogCaptureFixture, words: str) -> int:
    return sum(1 for r in caplog.records if r.levelname == "WARNING" and words in r.getMessage())


@pytest.mark.parametrize("when", ["before init_app", "after init_app"])
def test_httponly_off_is_honoured_and_warned_once(
    config: SessionConfig, when: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="session_middleware")
    app = flask.Flask(__name__)
    app.secret_key = FLASK_SECRET
    if when == "before init_app":
        app.config["SESSION_COOKIE_HTTPONLY"] = False
        init_app(app, config)
        assert _warnings(caplog, "SESSION_COOKIE_HTTPONLY is False") == 1, "at start-up"
    else:
        init_app(app, config)
        assert _warnings(caplog, "SESSION_COOKIE_HTTPONLY") == 0, "HttpOnly is on by default"
        app.config["SESSION_COOKIE_HTTPONLY"] = False

    @app.post("/put")
    def put() -> Any:
        flask.session["n"] = flask.session.get("n", 0) + 1
        return {}

    with browser(app) as client:
        headers = [set_cookie(client.post("/put")) for _ in range(2)]
        client.cookies.clear()
        headers.append(set_cookie(client.post("/put")))
    assert all("httponly" not in header.lower() for header in headers), headers
    assert _warnings(caplog, "SESSION_COOKIE_HTTPONLY is False") == 1, "logged once"


def test_a_value_json_cannot_hold_fails_at_the_assignment(config: SessionConfig) -> None:
    app = make_app(config)
    app.testing = True

    @app.post("/put-object")
    def put_object() -> Any:
        flask.session["thing"] = object()  # nothing Flask's tags can hold either
        return {}

    with browser(app) as client, pytest.raises(TypeError, match="'thing'"):
        client.post("/put-object")


# -- Flask-Login -----------------------------------------------------------------------------


def test_flask_login_flow(config: SessionConfig, key_prefix: str) -> None:
    app = make_app(config)
    with browser(app) as client:
        client.post("/put?key=cart&value=apples")
        anonymous = client.cookies["session"]

        client.post("/login/alice")
        logged_in = client.cookies["session"]
        assert logged_in != anonymous, "login_user gives a new session id"
        state = client.get("/state").json()
        assert state["user"] == "alice" and state["bound"] == "alice"
        assert state["data"] == {"cart": "apples"}
        assert config.epochs.get("alice") is not None
        assert browser(app, {"session": anonymous}).get("/state").json()["data"] == {}

        client.post("/logout")
        after = client.get("/state").json()
        assert after["user"] is None and after["bound"] is None
        assert after["data"] == {"cart": "apples"}, "logout_user keeps Flask's other keys"
        assert client.cookies["session"] not in (anonymous, logged_in)
        replay = browser(app, {"session": logged_in}).get("/state").json()
        assert replay["user"] is None and replay["data"] == {}
    assert len(session_keys(key_prefix)) == 1


def test_logout_others_and_invalidation_reach_flask_login(config: SessionConfig) -> None:
    app = make_app(config)
    here, there = browser(app), browser(app)
    for client in (here, there):
        client.post("/login/bob")

    here.post("/logout-others")
    assert here.get("/state").json()["user"] == "bob"
    ended = there.get("/state").json()
    assert ended["user"] is None and ended["rejected"] == "epoch"

    config.invalidate_user("bob")
    assert here.get("/state").json()["rejected"] == "epoch"


def test_a_logged_in_read_costs_one_round_trip(key_prefix: str) -> None:
    counter = Counter()
    client = counted_sync_client(counter)
    config = sessions(secret_key=SECRET, redis=client, key_prefix=key_prefix)
    with browser(make_app(config)) as http:
        counter.reset()
        http.post("/login/carol")
        assert counter.round_trips == 1, counter.commands
        counter.reset()
        assert http.get("/state").json()["user"] == "carol"
        assert counter.round_trips == 1, counter.commands
    client.close()


# -- faults -----------------------------------------------------------------------------------


def test_unreachable_redis_answers_503(key_prefix: str) -> None:
    down = sessions(secret_key=SECRET, redis_url="redis://127.0.0.1:1/0", redis_timeout=0.5)
    app = make_app(down)
    cookie = sessions(secret_key=SECRET).core.codec.encode(_new_ref())
    with browser(app, {"session": cookie}) as client:
        response = client.get("/state")
        assert response.status_code == 503 and response.content == BODY
        assert "set-cookie" not in response.headers, "Redis being down logs nobody out"

    with browser(app) as client:  # nothing to read, then the write fails
        response = client.post("/put?key=a&value=1")
        assert response.status_code == 503 and response.content == BODY
        assert "set-cookie" not in response.headers

    styled = make_app(down)
    styled.errorhandler(503)(lambda error: ("come back soon", 503))
    with browser(styled, {"session": cookie}) as client:
        assert client.get("/state").text == "come back soon"


def _new_ref() -> Any:
    from session_middleware._protocol.cookies import CookieRef
    from session_middleware._protocol.key_layout import new_anonymous_tag, new_session_id

    return CookieRef(new_anonymous_tag(), new_session_id())


# -- the decorator route and the switch from Flask's own sessions ------------------------------


def test_the_wsgi_decorator_still_serves_flask(key_prefix: str) -> None:
    config = sessions(
        secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, session_cookie="sm"
    )
    app = flask.Flask(__name__)
    app.secret_key = FLASK_SECRET

    @app.post("/login")
    def login() -> Any:
        get_session(flask.request).login("dora")
        flask.session["flask_own"] = True
        return {}

    @app.get("/who")
    def who() -> Any:
        return {
            "user": get_session(flask.request).user_id,
            "flask_own": flask.session.get("flask_own"),
            "ours": isinstance(flask.session._get_current_object(), Session),  # type: ignore[attr-defined]
        }

    with browser(config(app)) as client:
        client.post("/login")
        assert client.get("/who").json() == {"user": "dora", "flask_own": True, "ours": False}


@pytest.mark.parametrize("name", ["session", "sid"])
def test_flask_cookie_sessions_can_be_imported(name: str, key_prefix: str) -> None:
    with browser(make_app(None)) as before:
        before.post("/login/erin")
        before.post("/put?key=cart&value=figs")
        old = before.cookies["session"]
    config = sessions(
        secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, session_cookie=name
    )

    with browser(make_app(config), {"session": old}) as plain:
        assert plain.get("/state").json()["user"] is None, "by default users log in again once"

    with browser(make_app(config, import_cookie_sessions=True), {"session": old}) as client:
        response = client.get("/state")
        assert response.json()["user"] == "erin"
        assert response.json()["data"] == {"cart": "figs"}
        cookies = response.headers.get_list("set-cookie")
        assert any(c.startswith(f"{name}=") and "Max-Age=0" not in c for c in cookies)
        if name != "session":
            assert any(c.startswith("session=;") for c in cookies), "Flask's cookie is removed"
        state = client.get("/state").json()
        assert state["bound"] == "erin" and state["new"] is False


# -- a request in flight cannot undo an ending --------------------------------------------


@pytest.mark.parametrize("what", ["invalidate", "revoke"])
@pytest.mark.parametrize("action", ["login_user", "put", "logout_others"])
def test_a_held_request_cannot_undo_an_ending(
    config: SessionConfig, what: str, action: str
) -> None:
    import threading

    app = make_app(config)
    loaded, release = threading.Event(), threading.Event()

    @app.post("/held")
    def held() -> Any:
        if action == "login_user":
            login_user(User("alice"), remember=False, fresh=True)
        elif action == "put":
            flask.session["late"] = "1"
        else:
            flask.session.logout_others()
        loaded.set()
        assert release.wait(10)
        return {}

    thief, owner = browser(app), browser(app)
    thief.post("/login/alice")
    (listed,) = config.list_sessions("alice")
    stolen = thief.cookies["session"]
    worker = threading.Thread(target=lambda: thief.post("/held"))
    worker.start()
    assert loaded.wait(10)
    if what == "invalidate":
        config.invalidate_user("alice")
    else:
        assert config.revoke_session("alice", listed.handle)
    owner.post("/login/alice")
    release.set()
    worker.join(10)
    assert owner.get("/state").json()["user"] == "alice"
    for cookie in {stolen, thief.cookies.get("session")} - {None, ""}:
        assert browser(app, {"session": cookie}).get("/state").json()["user"] is None
    assert len(config.list_sessions("alice")) == 1


def test_what_flask_session_can_hold_comes_back_as_it_went_in(config: SessionConfig) -> None:
    import uuid

    from markupsafe import Markup

    app = make_app(config)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    the_id = uuid.uuid4()

    @app.post("/special")
    def special() -> Any:
        flask.session.update(
            {"t": (1, 2), "b": b"\x00bytes", "m": Markup("<b>hi</b>"), "u": the_id, "d": now}
        )
        flask.flash(Markup("<i>saved</i>"), "info")
        return {}

    @app.get("/special")
    def read_special() -> Any:
        session = flask.session
        messages = flask.get_flashed_messages(with_categories=True)
        assert messages == [("info", Markup("<i>saved</i>"))]
        assert isinstance(messages[0], tuple) and isinstance(messages[0][1], Markup)
        assert session["t"] == (1, 2) and session["b"] == b"\x00bytes"
        assert session["m"] == Markup("<b>hi</b>") and isinstance(session["m"], Markup)
        assert session["u"] == the_id and session["d"] == now
        return {"ok": True}

    app.testing = True
    with browser(app) as client:
        client.post("/special")
        assert client.get("/special").json() == {"ok": True}


# -- the secret key: app.secret_key, its fallbacks, or sessions(secret_key=...) --------------


def keyless(key_prefix: str) -> SessionConfig:
    """A configuration without a key of its own: the Flask app's key signs."""
    return sessions(redis_url=REDIS_URL, key_prefix=key_prefix)


def signed_with(key: Any, cookie: str) -> bool:
    return sessions(secret_key=key).core.codec.decode(cookie) is not None


def test_app_secret_key_alone_signs_the_session(key_prefix: str) -> None:
    config = keyless(key_prefix)
    app = make_app(config)
    with browser(app) as client:
        client.post("/put?key=cart&value=apples")
        client.post("/login/alice")
        state = client.get("/state").json()
        assert state["user"] == "alice" and state["data"] == {"cart": "apples"}
        cookie = client.cookies["session"]
    assert signed_with(FLASK_SECRET, cookie) and not signed_with(SECRET, cookie)
    tag = sessions(secret_key=FLASK_SECRET).keys.user_tag("alice")
    assert any(f"{{{tag}}}" in key for key in keys_under(key_prefix)), "the tag: the same key"

    other = flask.Flask(__name__)  # the same configuration, another app and key
    other.secret_key = OTHER_SECRET
    init_app(other, config)
    other.get("/who")(lambda: {"user": getattr(flask.session, "user_id", None)})
    with browser(other, {"session": cookie}) as stranger:
        assert stranger.get("/who").json() == {"user": None}, "app A's cookie is not B's"

    with pytest.raises(ConfigurationError, match="app context"):
        config.invalidate_user("alice")
    with app.app_context():
        config.invalidate_user("alice")
    with browser(app, {"session": cookie}) as client:
        assert client.get("/state").json()["rejected"] == "epoch"


def test_secret_key_fallbacks_rotate_as_in_flask(key_prefix: str) -> None:
    config = keyless(key_prefix)
    app = make_app(config)
    old, new = FLASK_SECRET, OTHER_SECRET
    first, second, third = browser(app), browser(app), browser(app)
    for client in (first, second):
        client.post("/put?key=cart&value=figs")
        client.post("/login/alice")

    app.secret_key, app.config["SECRET_KEY_FALLBACKS"] = new, [old]
    state = first.get("/state").json()
    assert state["user"] == "alice" and state["data"] == {"cart": "figs"}, "the old key verifies"
    first.post("/put?key=cart&value=pears")
    assert first.get("/state").json()["data"] == {"cart": "pears"}
    third.post("/login/alice")
    assert signed_with(new, third.cookies["session"]), "the new key signs"
    assert signed_with(new, first.cookies["session"]), "a write re-signs it with the new key"
    assert signed_with(old, second.cookies["session"])

    app.config["SECRET_KEY_FALLBACKS"] = []
    dropped = second.get("/state").json()
    assert dropped["user"] is None and dropped["rejected"] is None, "an old key, no longer kept"

    app.config["SECRET_KEY_FALLBACKS"] = [old]
    with app.app_context():
        assert len(config.list_sessions("alice")) == 3, "listed under both keys' tags"
        config.invalidate_user("alice")  # reaches the sessions of both keys
    for client in (first, second, third):
        assert client.get("/state").json()["rejected"] == "epoch"
        client.close()


def test_without_a_secret_key_the_session_is_flasks_null_session(key_prefix: str) -> None:
    app = make_app(keyless(key_prefix))
    app.secret_key = None
    app.testing = True
    client = app.test_client()
    state = client.get("/state").json
    assert state["data"] == {} and state["user"] is None and state["bound"] is None
    with pytest.raises(RuntimeError, match="no secret key was set"):
        client.post("/put?key=a&value=1")
    with pytest.raises(RuntimeError, match="did not open a session"), client.session_transaction():
        pass
    assert keys_under(key_prefix) == [], "nothing reached Redis"

    app.secret_key = FLASK_SECRET  # set later: read at each request, as Flask reads it
    client.post("/put?key=a&value=1")
    assert client.get("/state").json["data"] == {"a": "1"}


def test_the_key_given_to_sessions_wins_over_app_secret_key(config: SessionConfig) -> None:
    app = make_app(config)
    with browser(app) as client:
        client.post("/login/bob")
        cookie = client.cookies["session"]
        assert signed_with(SECRET, cookie) and not signed_with(FLASK_SECRET, cookie)
        app.secret_key = OTHER_SECRET
        assert client.get("/state").json()["user"] == "bob", "app.secret_key plays no part"
        app.secret_key = None
        assert client.get("/state").json()["user"] == "bob", "no null session either"
    config.invalidate_user("bob")  # no app context needed: the key is the configuration's


def test_other_frameworks_still_need_a_key_of_their_own(key_prefix: str) -> None:
    from starlette.applications import Starlette

    from session_middleware import SessionMiddleware

    config = keyless(key_prefix)
    with pytest.raises(ConfigurationError, match="secret_key is required"):
        config(flask.Flask(__name__).wsgi_app)
    with pytest.raises(ConfigurationError, match="secret_key is required"):
        SessionMiddleware(Starlette(), redis_url=REDIS_URL)
    with pytest.raises(ConfigurationError, match="secret_key is required"):
        config.invalidate_user("alice")
    init_app(flask.Flask(__name__), config)  # now reads the Flask app's key, for init_app only
    with pytest.raises(ConfigurationError, match="secret_key is required"):
        config(flask.Flask(__name__).wsgi_app)
