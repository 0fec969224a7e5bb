"""The devices views and URLconf for Django: a project with SESSION_ENGINE =
"session_middleware.django" and django.contrib.auth, driven over WSGI and ASGI by httpx
against the real Redis; the POSTs behind Django's CSRF check (no CsrfViewMiddleware: the
views protect themselves)."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model, login
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.http import HttpRequest, JsonResponse
from django.test.utils import override_settings
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from session_middleware import SessionConfig, get_session, sessions

from .support import REDIS_URL, SECRET, delete_prefix, new_prefix
from .support.devices import (
    CURL,
    IPHONE_SAFARI,
    WINDOWS_CHROME,
    WsgiDevices,
    check_phone_and_laptop,
    check_unavailable,
    unreachable_config,
    whoami_of,
)
from .support.django_native.settings import configure, engine_project

configure()

from session_middleware.django._settings import get_config  # noqa: E402
from session_middleware.django.devices import urls  # noqa: E402

BASE = "/account/sessions/"
JSON = {"accept": "application/json"}
HTML = {"accept": "text/html,application/xhtml+xml"}
PROJECT = engine_project(
    __name__,
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
)
_names = itertools.count()


@csrf_exempt
def sign_in(request: HttpRequest) -> JsonResponse:
    user = get_user_model().objects.get(username=request.GET["user"])
    login(request, user)
    return JsonResponse({"user": user.get_username()})


def whoami(request: HttpRequest) -> JsonResponse:
    session: Any = request.session
    return JsonResponse({"user": session.user_id, "handle": session.handle})


def wrapped_login(request: HttpRequest) -> JsonResponse:
    """Sign in on the session of ``sessions(...)`` wrapping the app (not Django's engine)."""
    get_session(request).login(request.GET["user"])
    return JsonResponse({"user": request.GET["user"]})


def wrapped_whoami(request: HttpRequest) -> JsonResponse:
    session = get_session(request)
    return JsonResponse({"user": session.user_id, "handle": session.handle})


WRAPPING_PREFIX = new_prefix()
WRAPPING = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=WRAPPING_PREFIX)

urlpatterns = [
    path("wrapped/login", wrapped_login),
    path("wrapped/whoami", wrapped_whoami),
    path("wrapped/", include(urls(WRAPPING), namespace="wrapped_devices")),
    path("login", sign_in),
    path("whoami", whoami),
    path("account/sessions/", include("session_middleware.django.devices")),
    path("broken/", include(urls(unreachable_config()), namespace="broken_devices")),
]


@pytest.fixture(scope="module")
def project() -> Iterator[None]:
    with override_settings(**PROJECT):
        call_command("migrate", verbosity=0)
        yield
    delete_prefix(WRAPPING_PREFIX)
    WRAPPING.close()


@pytest.fixture
def config(project: None, key_prefix: str) -> Iterator[SessionConfig]:
    options = {"secret_key": SECRET, "redis_url": REDIS_URL, "key_prefix": key_prefix}
    with override_settings(SESSION_MIDDLEWARE=options):
        yield get_config()


@pytest.fixture
def devices(config: SessionConfig) -> Iterator[WsgiDevices]:
    rig = WsgiDevices(WSGIHandler())
    yield rig
    rig.close()


@pytest.fixture
def alice(config: SessionConfig) -> str:
    return new_user()


@pytest.fixture
def bob(config: SessionConfig) -> str:
    return new_user()


def new_user() -> str:
    name = f"devices{next(_names)}-{time.time_ns()}"
    get_user_model().objects.create_user(name, password="unused password 123")
    return name


def csrf(client: httpx.Client) -> dict[str, str]:
    return csrf_of(client, BASE)


def csrf_of(client: httpx.Client, base: str) -> dict[str, str]:
    """The CSRF header a script sends, after a GET that set the csrftoken cookie."""
    client.get(f"{base}api/")
    return {"x-csrftoken": client.cookies["csrftoken"], **JSON}


def test_the_list_shows_each_device_and_marks_this_one(devices: WsgiDevices, alice: str) -> None:
    phone = devices.signed_in(alice, IPHONE_SAFARI)
    laptop = devices.signed_in(alice, WINDOWS_CHROME)
    answer = phone.get(f"{BASE}api/")
    assert answer.status_code == 200
    check_phone_and_laptop(answer, whoami_of(phone)["handle"], whoami_of(laptop)["handle"])


def test_the_page_lists_the_devices_with_their_buttons(devices: WsgiDevices, alice: str) -> None:
    phone = devices.signed_in(alice, IPHONE_SAFARI)
    laptop = devices.signed_in(alice, WINDOWS_CHROME)
    page = phone.get(BASE)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    html = page.text
    assert "Safari on iPhone" in html and "Chrome on Windows" in html
    assert html.count("This device") == 1
    laptop_handle = whoami_of(laptop)["handle"]
    assert f'action="{BASE}{laptop_handle}/revoke/"' in html
    assert f'action="{BASE}others/revoke/"' in html
    # The page's own form signs the laptop out and comes back to the page.
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert token is not None
    answer = phone.post(
        f"{BASE}{laptop_handle}/revoke/",
        data={"csrfmiddlewaretoken": token.group(1)},
        headers=HTML,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == BASE
    assert whoami_of(laptop)["user"] is None


def test_the_page_works_over_asgi(config: SessionConfig, alice: str) -> None:
    import anyio

    async def visit() -> str:
        transport = httpx.ASGITransport(app=ASGIHandler())
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers={"user-agent": CURL}
        ) as client:
            assert (await client.get("/login", params={"user": alice})).status_code == 200
            answer = await client.get(f"{BASE}api/")
            assert answer.status_code == 200
            (entry,) = answer.json()["sessions"]
            assert entry["current"] is True
            return str(entry["device"])

    assert anyio.run(visit) == "curl"


def test_anonymous_requests_are_refused(devices: WsgiDevices) -> None:
    stranger = devices.device(CURL)
    assert stranger.get(BASE).status_code == 401
    assert stranger.get(f"{BASE}api/").status_code == 401
    proof = csrf(stranger)
    assert stranger.post(f"{BASE}{'0' * 32}/revoke/", headers=proof).status_code == 401
    assert stranger.post(f"{BASE}others/revoke/", headers=proof).status_code == 401


def test_another_users_session_is_neither_listed_nor_revocable(
    devices: WsgiDevices, alice: str, bob: str
) -> None:
    alice_phone = devices.signed_in(alice, IPHONE_SAFARI)
    bob_laptop = devices.signed_in(bob, WINDOWS_CHROME)
    alice_handle = whoami_of(alice_phone)["handle"]
    listed = bob_laptop.get(f"{BASE}api/").json()["sessions"]
    assert [entry["handle"] for entry in listed] == [whoami_of(bob_laptop)["handle"]]
    refused = bob_laptop.post(f"{BASE}{alice_handle}/revoke/", headers=csrf(bob_laptop))
    assert refused.status_code == 404
    assert refused.json() == {"error": "no such session"}
    assert whoami_of(alice_phone)["user"] is not None


def test_a_revoke_without_the_csrf_token_is_refused(devices: WsgiDevices, alice: str) -> None:
    phone = devices.signed_in(alice, IPHONE_SAFARI)
    laptop = devices.signed_in(alice, WINDOWS_CHROME)
    laptop_handle = whoami_of(laptop)["handle"]
    csrf(phone)  # the cookie alone proves nothing: the token must come with the request
    assert phone.post(f"{BASE}{laptop_handle}/revoke/", headers=JSON).status_code == 403
    assert phone.post(f"{BASE}others/revoke/", headers=JSON).status_code == 403
    assert whoami_of(laptop)["user"] is not None


def test_revoking_a_device_signs_it_out(devices: WsgiDevices, alice: str) -> None:
    phone = devices.signed_in(alice, IPHONE_SAFARI)
    laptop = devices.signed_in(alice, WINDOWS_CHROME)
    laptop_handle = whoami_of(laptop)["handle"]
    answer = phone.post(f"{BASE}{laptop_handle}/revoke/", headers=csrf(phone))
    assert answer.status_code == 200
    assert answer.json() == {"revoked": laptop_handle}
    assert whoami_of(laptop)["user"] is None
    assert whoami_of(phone)["user"] is not None


def test_revoking_this_device_signs_it_out(devices: WsgiDevices, alice: str) -> None:
    phone = devices.signed_in(alice, IPHONE_SAFARI)
    handle = whoami_of(phone)["handle"]
    assert phone.post(f"{BASE}{handle}/revoke/", headers=csrf(phone)).status_code == 200
    assert whoami_of(phone)["user"] is None


def test_signing_out_the_others_keeps_this_device(
    devices: WsgiDevices, alice: str, bob: str
) -> None:
    phone = devices.signed_in(alice, IPHONE_SAFARI)
    laptop = devices.signed_in(alice, WINDOWS_CHROME)
    bob_laptop = devices.signed_in(bob, CURL)
    assert phone.post(f"{BASE}others/revoke/", headers=csrf(phone)).status_code == 200
    assert whoami_of(laptop)["user"] is None
    assert whoami_of(phone)["user"] is not None
    assert whoami_of(bob_laptop)["user"] is not None


def test_a_store_failure_is_the_503_not_a_traceback(devices: WsgiDevices, alice: str) -> None:
    phone = devices.signed_in(alice, IPHONE_SAFARI)
    token = csrf(phone)
    for answer in (
        phone.get("/broken/"),
        phone.get("/broken/api/"),
        phone.post(f"/broken/{'0' * 32}/revoke/", headers=token),
    ):
        check_unavailable(answer.status_code, answer.headers, answer.json())


def test_a_project_wrapped_with_sessions_passes_its_config(config: SessionConfig) -> None:
    devices = WsgiDevices(WRAPPING(WSGIHandler()))
    try:
        phone, laptop = devices.device(IPHONE_SAFARI), devices.device(WINDOWS_CHROME)
        for client in (phone, laptop):
            assert client.get("/wrapped/login", params={"user": "carol"}).status_code == 200
        mine = phone.get("/wrapped/whoami").json()["handle"]
        laptop_handle = laptop.get("/wrapped/whoami").json()["handle"]
        listed = phone.get("/wrapped/api/").json()["sessions"]
        assert {entry["handle"]: entry["current"] for entry in listed} == {
            mine: True,
            laptop_handle: False,
        }
        answer = phone.post(
            f"/wrapped/{laptop_handle}/revoke/", headers=csrf_of(phone, "/wrapped/")
        )
        assert answer.status_code == 200
        assert laptop.get("/wrapped/whoami").json()["user"] is None
        answer = phone.post(f"/wrapped/{mine}/revoke/", headers=csrf_of(phone, "/wrapped/"))
        assert answer.status_code == 200
        assert phone.get("/wrapped/whoami").json()["user"] is None
    finally:
        devices.close()
