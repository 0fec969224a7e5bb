"""A Django request in flight that changes the password cannot outlive an ending.

Device A (a stolen cookie, say) starts a request that changes the password; its session
loads while still valid, and the view is held there. Meanwhile the user's sessions are
ended from outside: `invalidate_user`, a password change on another device, or
`revoke_session` of A's session. Then A's view runs `set_password`, `save()` and
`update_session_auth_hash`. A's bump is a compare-and-set from the epoch its session
carried: refused, the bump still happens, but A's session is not re-stamped, and A's next
request is anonymous. Over WSGI and ASGI, with the epochs in Redis and in SQL (SQLite).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from typing import Any

import django
import httpx
import pytest
from django.contrib.auth import (
    get_user_model,
    update_session_auth_hash,
)
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, JsonResponse
from django.test.utils import override_settings
from django.urls import path

from session_middleware import SessionConfig, SessionEvent
from session_middleware.epochs.sql import SQLEpochs

from .support.django_native.engine_tests import (
    COOKIE,
    HOLD,
    PASSWORD,
    Device,
    engine_fixtures,
    sign_in,
    whoami,
)
from .support.django_native.settings import configure, engine_project
from .support.redis_servers import ReplicatedServers

# Django 5.0 added the async auth API; on Django 4.2 the ASGI cases run the sync view.
ASYNC_AUTH_API = django.VERSION >= (5, 0)
if ASYNC_AUTH_API:
    from django.contrib.auth import aupdate_session_auth_hash

configure()

from session_middleware.django import SessionStore  # noqa: E402

PROJECT = engine_project(__name__)
_names = itertools.count()


class Gate:
    """Holds a view between loading its session and changing the password."""

    def __init__(self) -> None:
        self.loaded = threading.Event()
        self.release = threading.Event()


_gate = Gate()


# -- the project's views -------------------------------------------------------------


def change_password(request: HttpRequest) -> JsonResponse:
    user = request.user
    user.set_password(request.POST["password"])
    user.save()
    update_session_auth_hash(request, user)
    return JsonResponse({"user": user.get_username()})


def held_change(request: HttpRequest) -> JsonResponse:
    user = request.user
    assert user.is_authenticated  # the session is loaded, and valid, here
    _gate.loaded.set()
    assert _gate.release.wait(HOLD)
    user.set_password(request.POST["password"])
    user.save()
    update_session_auth_hash(request, user)
    return JsonResponse({"user": user.get_username()})


async def aheld_change(request: HttpRequest) -> JsonResponse:
    user = request.user = await request.auser()  # aupdate_session_auth_hash reads .user
    assert user.is_authenticated
    _gate.loaded.set()
    assert await asyncio.to_thread(_gate.release.wait, HOLD)
    user.set_password(request.POST["password"])
    await user.asave()
    await aupdate_session_auth_hash(request, user)
    return JsonResponse({"user": user.get_username()})


urlpatterns = [
    path("whoami", whoami),
    path("login", sign_in),
    path("password", change_password),
    path("held", held_change),
    path("aheld", aheld_change),
]


# -- fixtures ----------------------------------------------------------------------------


project, config = engine_fixtures(PROJECT)


@pytest.fixture
def gate() -> Gate:
    _gate.loaded.clear()
    _gate.release.clear()
    return _gate


def new_user() -> Any:
    return get_user_model().objects.create_user(
        f"inflight{next(_names)}-{time.time_ns()}", password=PASSWORD
    )


ENDINGS = ["invalidate_user", "password_elsewhere", "revoke_session"]


def end_from_outside(ending: str, config: SessionConfig, user: Any, owner: Device,
                     held_cookie: str) -> None:  # fmt: skip
    """End the held device's session (or every session of its user) while it is held."""
    user_id = str(user.pk)
    if ending == "invalidate_user":
        config.invalidate_user(user_id)
    elif ending == "password_elsewhere":
        response = owner.post("/password", password="the owner's new password")
        assert response.status_code == 200, response.content
        assert owner.who() == user.username, "the owner's own change keeps the owner"
    else:
        handle = SessionStore(held_cookie).handle
        assert handle is not None and config.revoke_session(user_id, handle)


def assert_held_device_is_logged_out(thief: Device, stolen: str, config: SessionConfig,
                                     user: Any) -> None:  # fmt: skip
    """The held device's next request is anonymous, whichever cookie it kept."""
    for cookie in {stolen, thief.cookie} - {None}:
        assert Device(cookie).who() is None, "the held request kept its session"
    handles = {info.handle for info in config.list_sessions(str(user.pk))}
    assert SessionStore(stolen).handle not in handles


def _logged_in_pair(user: Any) -> tuple[Device, Device]:
    thief, owner = Device(), Device()
    for device in (thief, owner):
        assert device.post("/login", username=user.username).status_code == 200
    return thief, owner


# -- the interleavings -------------------------------------------------------------------


@pytest.mark.parametrize("ending", ENDINGS)
def test_wsgi_password_change_in_flight_ends_with_the_ending(
    ending: str, config: SessionConfig, gate: Gate
) -> None:
    user = new_user()
    thief, owner = _logged_in_pair(user)
    stolen = thief.cookie
    assert stolen is not None
    responses: list[httpx.Response] = []
    worker = threading.Thread(
        target=lambda: responses.append(thief.post("/held", password="the thief's password"))
    )
    worker.start()
    try:
        assert gate.loaded.wait(HOLD)
        end_from_outside(ending, config, user, owner, stolen)
    finally:
        gate.release.set()
        worker.join(HOLD)
    (response,) = responses
    assert response.status_code in (200, 400), response.content
    assert_held_device_is_logged_out(thief, stolen, config, user)


@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.anyio
async def test_asgi_password_change_in_flight_ends_with_the_ending(
    ending: str, config: SessionConfig, gate: Gate
) -> None:
    user = await asyncio.to_thread(new_user)
    thief, owner = await asyncio.to_thread(_logged_in_pair, user)
    stolen = thief.cookie
    assert stolen is not None
    # An async view on Redis epochs; a sync view under ASGI on SQL epochs (a Django
    # configuration takes a sync engine, which an async view cannot use).
    view = "/aheld" if ASYNC_AUTH_API and not isinstance(config.epochs, SQLEpochs) else "/held"
    transport = httpx.ASGITransport(app=ASGIHandler())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        client.cookies[COOKIE] = stolen
        request = asyncio.create_task(client.post(view, data={"password": "the thief's"}))
        try:
            assert await asyncio.to_thread(gate.loaded.wait, HOLD)
            await asyncio.to_thread(end_from_outside, ending, config, user, owner, stolen)
        finally:
            gate.release.set()
        response = await asyncio.wait_for(request, HOLD)
        assert response.status_code in (200, 400), response.content
    issued = response.cookies.get(COOKIE)
    if issued is not None:  # the cookie the response left the device with, if it set one
        thief.client.cookies.clear()
        if issued:
            thief.client.cookies[COOKIE] = issued
    await asyncio.to_thread(assert_held_device_is_logged_out, thief, stolen, config, user)


def test_a_password_change_with_nothing_in_between_keeps_its_device(
    config: SessionConfig,
) -> None:
    user = new_user()
    here, elsewhere = _logged_in_pair(user)
    assert here.post("/password", password="a new one").status_code == 200
    assert here.who() == user.username
    assert elsewhere.who() is None


def test_a_password_change_that_cannot_be_made_durable_ends_the_session(
    project: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The bump waits for a replica as invalidate_user does; the replica frozen, the
    device that changed the password is logged out, and the failure reported."""
    events: list[SessionEvent] = []
    with ReplicatedServers().running() as servers:
        configured = servers.short_deadline_config(events.append)
        with override_settings(SESSION_MIDDLEWARE=configured):
            user = new_user()
            here, elsewhere = _logged_in_pair(user)
            servers.replica.pause()
            caplog.set_level(logging.WARNING, logger="session_middleware")
            try:
                response = here.post("/password", password="a new one")
            finally:
                servers.replica.resume()
            assert response.status_code == 200, response.content
            assert here.who() is None, "never a silent OK: this session ended"
            assert elsewhere.who() is None
        configured.close()
    failures = [(e.kind, e.user_id) for e in events if e.reason == "unreplicated"]
    assert failures == [("rejected", str(user.pk))]
    assert sum("could not be made durable" in r.getMessage() for r in caplog.records) == 1
