"""The user agent and IP that list_sessions shows: every integration records those of the
request that logs in, read the same way, and keeps them through the write-backs that move
``last_seen``. Each through the real framework (httpx's transports) and the real Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import flask
import httpx
import pytest
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, JsonResponse
from django.test.utils import override_settings
from django.urls import path
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from session_middleware import SessionConfig, get_session, sessions
from session_middleware.flask import init_app

from .support import REDIS_URL, SECRET
from .support.devices import CLIENT_IP, WINDOWS_CHROME
from .support.django_native.settings import configure, engine_project

configure()

from session_middleware.django._settings import get_config  # noqa: E402

# Every request past the first is due to record activity (moves last_seen).
REFRESH_EVERY_REQUEST = 0.000_001
HEADERS = {"user-agent": WINDOWS_CHROME}
BASE_URL = "http://testserver"


@pytest.fixture
def config(key_prefix: str) -> Iterator[SessionConfig]:
    configured = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        refresh_interval=REFRESH_EVERY_REQUEST,
    )
    yield configured
    configured.close()


def check_recorded_and_kept(config: SessionConfig, get: Callable[[str], Any]) -> None:
    """`get(path)` makes a request: /login signs alice in, /visit reads her session. The
    listing shows the login's user agent and IP, and still does once a visit has moved
    last_seen."""
    get("/login")
    (signed_in,) = config.list_sessions("alice")
    assert (signed_in.user_agent, signed_in.ip) == (WINDOWS_CHROME, CLIENT_IP)
    deadline = time.monotonic() + 10
    for _ in range(10_000):
        assert get("/visit") == "alice"
        (seen,) = config.list_sessions("alice")
        if seen.last_seen > signed_in.last_seen or time.monotonic() > deadline:
            break
    assert seen.last_seen > signed_in.last_seen, "a visit recorded the activity"
    assert (seen.user_agent, seen.ip) == (WINDOWS_CHROME, CLIENT_IP)


# -- ASGI (Starlette) ----------------------------------------------------------------------


async def starlette_login(request: Request) -> JSONResponse:
    get_session(request).login("alice")
    return JSONResponse(None)


async def starlette_visit(request: Request) -> JSONResponse:
    return JSONResponse(get_session(request).user_id)


def test_asgi_records_the_client_of_the_login(config: SessionConfig) -> None:
    routes = [Route("/login", starlette_login), Route("/visit", starlette_visit)]
    app = config(Starlette(routes=routes))

    async def visits() -> None:
        transport = httpx.ASGITransport(app=app, client=(CLIENT_IP, 50000))
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE_URL, headers=HEADERS
        ) as client:
            await client.get("/login")
            (signed_in,) = await config.alist_sessions("alice")
            assert (signed_in.user_agent, signed_in.ip) == (WINDOWS_CHROME, CLIENT_IP)
            deadline = time.monotonic() + 10
            for _ in range(10_000):
                assert (await client.get("/visit")).json() == "alice"
                (seen,) = await config.alist_sessions("alice")
                if seen.last_seen > signed_in.last_seen or time.monotonic() > deadline:
                    break
            assert seen.last_seen > signed_in.last_seen, "a visit recorded the activity"
            assert (seen.user_agent, seen.ip) == (WINDOWS_CHROME, CLIENT_IP)

    anyio.run(visits)


# -- WSGI ------------------------------------------------------------------------------------


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    session = get_session(environ)
    if environ["PATH_INFO"] == "/login":
        session.login("alice")
    start_response("200 OK", [("content-type", "application/json")])
    return [b'"alice"' if session.user_id == "alice" else b"null"]


def sync_client(transport: httpx.BaseTransport) -> httpx.Client:
    return httpx.Client(transport=transport, base_url=BASE_URL, headers=HEADERS)


def test_wsgi_records_the_client_of_the_login(config: SessionConfig) -> None:
    transport = httpx.WSGITransport(app=config(wsgi_app), remote_addr=CLIENT_IP)
    with sync_client(transport) as client:
        check_recorded_and_kept(config, lambda path: client.get(path).json())


# -- Flask -----------------------------------------------------------------------------------


def flask_app(config: SessionConfig) -> flask.Flask:
    app = flask.Flask(__name__)
    app.secret_key = SECRET

    @app.get("/login")
    def login() -> Any:
        get_session(flask.request).login("alice")
        return flask.jsonify(None)

    @app.get("/visit")
    def visit() -> Any:
        return flask.jsonify(get_session(flask.request).user_id)

    init_app(app, config)
    return app


def test_flask_records_the_client_of_the_login(config: SessionConfig) -> None:
    transport = httpx.WSGITransport(app=flask_app(config), remote_addr=CLIENT_IP)
    with sync_client(transport) as client:
        check_recorded_and_kept(config, lambda path: client.get(path).json())


# -- Django ----------------------------------------------------------------------------------


def django_login(request: HttpRequest) -> JsonResponse:
    """A login through the package's Session, not django.contrib.auth.login()."""
    get_session(request).login("alice")
    return JsonResponse(None, safe=False)


def django_rotate(request: HttpRequest) -> JsonResponse:
    """A new key for the logged-in session, as update_session_auth_hash() makes one."""
    request.session.cycle_key()
    return JsonResponse(None, safe=False)


def django_visit(request: HttpRequest) -> JsonResponse:
    return JsonResponse(get_session(request).user_id, safe=False)


urlpatterns = [
    path("login", django_login),
    path("rotate", django_rotate),
    path("visit", django_visit),
]


@pytest.fixture
def django_config(key_prefix: str) -> Iterator[SessionConfig]:
    options = {
        "secret_key": SECRET,
        "redis_url": REDIS_URL,
        "key_prefix": key_prefix,
        "refresh_interval": REFRESH_EVERY_REQUEST,
    }
    project = engine_project(
        __name__, MIDDLEWARE=["session_middleware.django.middleware.SessionMiddleware"]
    )
    with override_settings(**project, SESSION_MIDDLEWARE=options):
        yield get_config()


def test_django_records_the_client_of_the_login(django_config: SessionConfig) -> None:
    transport = httpx.WSGITransport(app=WSGIHandler(), remote_addr=CLIENT_IP)
    with sync_client(transport) as client:
        check_recorded_and_kept(django_config, lambda path: client.get(path).json())


def test_django_records_the_client_of_a_rotation(django_config: SessionConfig) -> None:
    transport = httpx.WSGITransport(app=WSGIHandler(), remote_addr=CLIENT_IP)
    with sync_client(transport) as client:
        client.get("/login")
        (before,) = django_config.list_sessions("alice")
        client.get("/rotate")
        (after,) = django_config.list_sessions("alice")
    assert after.handle != before.handle, "the session moved to a new key"
    assert (after.user_agent, after.ip) == (WINDOWS_CHROME, CLIENT_IP)


def test_django_over_asgi_records_the_client_of_the_login(django_config: SessionConfig) -> None:
    async def visits() -> None:
        transport = httpx.ASGITransport(app=ASGIHandler(), client=(CLIENT_IP, 50000))
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE_URL, headers=HEADERS
        ) as client:
            assert (await client.get("/login")).status_code == 200
            assert (await client.get("/visit")).json() == "alice"

    anyio.run(visits)
    (info,) = django_config.list_sessions("alice")
    assert (info.user_agent, info.ip) == (WINDOWS_CHROME, CLIENT_IP)
