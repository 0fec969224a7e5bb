"""The devices blueprint on Flask (with Flask-Login), through httpx's WSGI transport and the
real Redis; its POSTs behind the same-origin check, or behind Flask-WTF's CSRFProtect."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import flask
import pytest
from flask_login import LoginManager, UserMixin, login_user
from flask_wtf.csrf import CSRFProtect, generate_csrf

from session_middleware import SessionConfig, get_session
from session_middleware.devices.flask import devices_blueprint
from session_middleware.flask import init_app

from .support.devices import (
    CROSS_SITE_PROOFS,
    CURL,
    IPHONE_SAFARI,
    SAME_ORIGIN,
    WINDOWS_CHROME,
    WsgiDevices,
    check_phone_and_laptop,
    check_unavailable,
    unreachable_config,
    whoami_of,
)

BASE = "/account/sessions"


class User(UserMixin):
    def __init__(self, name: str) -> None:
        self.id = name


def make_app(
    config: SessionConfig, *, csrf: bool = False, devices_config: SessionConfig | None = None
) -> flask.Flask:
    app = flask.Flask(__name__)
    app.secret_key = "devices-flask-secret-0123456789abcdefgh"
    init_app(app, config)
    LoginManager(app).user_loader(User)
    if csrf:
        CSRFProtect(app)
    app.register_blueprint(devices_blueprint(devices_config), url_prefix=BASE)

    @app.get("/login")
    def login() -> Any:
        login_user(User(flask.request.args["user"]))
        return {}

    @app.get("/whoami")
    def whoami() -> Any:
        session: Any = flask.session
        return {"user": session.user_id, "handle": session.handle}

    @app.get("/csrf-token")
    def csrf_token() -> Any:
        return {"token": generate_csrf()}

    return app


@pytest.fixture
def devices(config: SessionConfig) -> Iterator[WsgiDevices]:
    rig = WsgiDevices(make_app(config))
    yield rig
    rig.close()
    config.close()


def test_the_list_shows_each_device_and_marks_this_one(devices: WsgiDevices) -> None:
    phone = devices.signed_in("alice", IPHONE_SAFARI)
    laptop = devices.signed_in("alice", WINDOWS_CHROME)
    answer = phone.get(f"{BASE}/")
    assert answer.status_code == 200
    check_phone_and_laptop(answer, whoami_of(phone)["handle"], whoami_of(laptop)["handle"])


def test_anonymous_requests_are_refused(devices: WsgiDevices) -> None:
    stranger = devices.device(CURL)
    assert stranger.get(f"{BASE}/").status_code == 401
    assert stranger.post(f"{BASE}/{'0' * 32}/revoke", headers=SAME_ORIGIN).status_code == 401
    assert stranger.post(f"{BASE}/others/revoke", headers=SAME_ORIGIN).status_code == 401


def test_another_users_session_is_neither_listed_nor_revocable(devices: WsgiDevices) -> None:
    alice = devices.signed_in("alice", IPHONE_SAFARI)
    bob = devices.signed_in("bob", WINDOWS_CHROME)
    alice_handle = whoami_of(alice)["handle"]
    listed = bob.get(f"{BASE}/").json()["sessions"]
    assert [entry["handle"] for entry in listed] == [whoami_of(bob)["handle"]]
    refused = bob.post(f"{BASE}/{alice_handle}/revoke", headers=SAME_ORIGIN)
    assert refused.status_code == 404
    assert refused.json() == {"error": "no such session"}
    assert whoami_of(alice)["user"] == "alice"


@pytest.mark.parametrize("proof", CROSS_SITE_PROOFS.values(), ids=CROSS_SITE_PROOFS.keys())
def test_a_revoke_without_same_origin_proof_is_refused(
    devices: WsgiDevices, proof: dict[str, str]
) -> None:
    phone = devices.signed_in("alice", IPHONE_SAFARI)
    laptop = devices.signed_in("alice", WINDOWS_CHROME)
    laptop_handle = whoami_of(laptop)["handle"]
    assert phone.post(f"{BASE}/{laptop_handle}/revoke", headers=proof).status_code == 403
    assert phone.post(f"{BASE}/others/revoke", headers=proof).status_code == 403
    assert whoami_of(laptop)["user"] == "alice"


def test_revoking_a_device_signs_it_out(devices: WsgiDevices) -> None:
    phone = devices.signed_in("alice", IPHONE_SAFARI)
    laptop = devices.signed_in("alice", WINDOWS_CHROME)
    laptop_handle = whoami_of(laptop)["handle"]
    answer = phone.post(f"{BASE}/{laptop_handle}/revoke", headers={"origin": "http://testserver"})
    assert answer.status_code == 200
    assert answer.json() == {"revoked": laptop_handle}
    assert whoami_of(laptop)["user"] is None
    assert whoami_of(phone)["user"] == "alice"


def test_revoking_this_device_signs_it_out(devices: WsgiDevices) -> None:
    phone = devices.signed_in("alice", IPHONE_SAFARI)
    handle = whoami_of(phone)["handle"]
    assert phone.post(f"{BASE}/{handle}/revoke", headers=SAME_ORIGIN).status_code == 200
    assert whoami_of(phone)["user"] is None


def test_signing_out_the_others_keeps_this_device(devices: WsgiDevices) -> None:
    phone = devices.signed_in("alice", IPHONE_SAFARI)
    laptop = devices.signed_in("alice", WINDOWS_CHROME)
    bob = devices.signed_in("bob", CURL)
    assert phone.post(f"{BASE}/others/revoke", headers=SAME_ORIGIN).status_code == 200
    assert whoami_of(laptop)["user"] is None
    assert whoami_of(phone)["user"] == "alice"
    assert whoami_of(bob)["user"] == "bob"


def test_with_csrf_protect_a_post_needs_its_token(config: SessionConfig) -> None:
    rig = WsgiDevices(make_app(config, csrf=True))
    phone = rig.signed_in("alice", IPHONE_SAFARI)
    laptop = rig.signed_in("alice", WINDOWS_CHROME)
    laptop_handle = whoami_of(laptop)["handle"]
    # Same origin is not enough: CSRFProtect wants its token.
    without = phone.post(f"{BASE}/{laptop_handle}/revoke", headers=SAME_ORIGIN)
    assert without.status_code == 403
    assert without.json()["error"].startswith("not sent from this site")
    assert whoami_of(laptop)["user"] == "alice"
    token = phone.get("/csrf-token").json()["token"]
    answer = phone.post(f"{BASE}/{laptop_handle}/revoke", headers={"x-csrftoken": token})
    assert answer.status_code == 200
    assert whoami_of(laptop)["user"] is None
    rig.close()
    config.close()


def test_a_store_failure_is_the_503_not_a_traceback(config: SessionConfig) -> None:
    broken = unreachable_config()
    rig = WsgiDevices(make_app(config, devices_config=broken))
    try:
        phone = rig.signed_in("alice", IPHONE_SAFARI)
        for answer in (
            phone.get(f"{BASE}/"),
            phone.post(f"{BASE}/{'0' * 32}/revoke", headers=SAME_ORIGIN),
        ):
            check_unavailable(answer.status_code, answer.headers, answer.json())
    finally:
        rig.close()
        broken.close()


def test_an_app_wrapped_without_init_app_serves_the_list_and_the_revokes(
    config: SessionConfig,
) -> None:
    app = flask.Flask(__name__)
    app.secret_key = "devices-flask-secret-0123456789abcdefgh"  # Flask's own session, beside ours
    app.register_blueprint(devices_blueprint(config), url_prefix=BASE)

    @app.get("/login")
    def login() -> Any:
        get_session(flask.request).login(flask.request.args["user"])
        return {}

    @app.get("/whoami")
    def whoami() -> Any:
        session = get_session(flask.request)
        return {"user": session.user_id, "handle": session.handle}

    app.wsgi_app = config(app.wsgi_app)  # type: ignore[method-assign]
    rig = WsgiDevices(app)
    try:
        phone = rig.signed_in("alice", IPHONE_SAFARI)
        laptop = rig.signed_in("alice", WINDOWS_CHROME)
        answer = phone.get(f"{BASE}/")
        check_phone_and_laptop(answer, whoami_of(phone)["handle"], whoami_of(laptop)["handle"])
        assert phone.post(f"{BASE}/others/revoke", headers=SAME_ORIGIN).status_code == 200
        assert whoami_of(laptop)["user"] is None
        assert whoami_of(phone)["user"] == "alice"
    finally:
        rig.close()
        config.close()
