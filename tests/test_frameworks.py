"""Every supported framework, wrapped by the one decorator, against the real Redis.

Each app exposes the same routes, ``/<action>?...``, whose handler gets the session
through ``get_session(request)`` (and ``request.session`` where the framework has it),
does the action and answers with JSON: the user, the data, and the rejection reason the
handler can see. One flow then runs against every app: login, a second device, "log out
my other devices", an invalidation from outside any request, and logout.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import django
import flask
import httpx
import pytest
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.test.utils import override_settings
from django.urls import path
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

from session_middleware import Session, SessionConfig, SessionMiddleware, get_session, sessions
from session_middleware.wsgi import WSGISessionMiddleware

from .support import REDIS_URL, SECRET
from .support.counting import Counter, counted_async_client, counted_sync_client
from .support.http import run_websocket

BASE_URL = "http://testserver"
WSGI_REJECTED = "session_middleware.rejected"
DJANGO_SETTINGS = {
    "ROOT_URLCONF": __name__,
    "ALLOWED_HOSTS": ["testserver"],
    "MIDDLEWARE": [],
}

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY=SECRET,
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
        **DJANGO_SETTINGS,
    )
django.setup()


# -- what every handler does --------------------------------------------------------------


def act(session: Session, action: str, params: dict[str, str], rejected: Any) -> dict[str, Any]:
    if action == "login":
        session.login(params["user"])
        session["since"] = "login"
    elif action == "put":
        session[params["key"]] = params["value"]
    elif action == "logout-others":
        session.logout_others()
    elif action == "logout":
        session.logout()
    elif action != "read":
        raise ValueError(action)
    return {"user": session.user_id, "data": dict(session), "rejected": rejected}


def query(raw: bytes | str) -> dict[str, str]:
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    return dict(parse_qsl(text))


# -- the apps ---------------------------------------------------------------------------


def raw_asgi(config: SessionConfig, prefix: str) -> Any:
    @config
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        state = act(
            get_session(scope),
            scope["path"].strip("/"),
            query(scope["query_string"]),
            scope.get("session_rejected"),
        )
        body = json.dumps(state).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def starlette_endpoint(request: StarletteRequest) -> JSONResponse:
    session = request.session
    assert isinstance(session, Session) and session is get_session(request)
    state = act(
        session,
        request.path_params["action"],
        dict(request.query_params),
        request.scope.get("session_rejected"),
    )
    return JSONResponse(state)


def starlette_routes() -> list[Route]:
    return [Route("/{action}", starlette_endpoint, methods=["GET", "POST"])]


def starlette(config: SessionConfig, prefix: str) -> Any:
    return config(Starlette(routes=starlette_routes()))


def starlette_add_middleware(config: SessionConfig, prefix: str) -> Any:
    app = Starlette(routes=starlette_routes())
    app.add_middleware(SessionMiddleware, secret_key=SECRET, redis_url=REDIS_URL, key_prefix=prefix)
    return app


def fastapi(config: SessionConfig, prefix: str) -> Any:
    app = FastAPI()

    @app.api_route("/{action}", methods=["GET", "POST"])
    async def endpoint(action: str, request: Request) -> dict[str, Any]:
        assert request.session is get_session(request)
        rejected = request.scope.get("session_rejected")
        return act(get_session(request), action, dict(request.query_params), rejected)

    return config(app)


def django_view(request: HttpRequest, action: str) -> JsonResponse:
    holder = getattr(request, "scope", None) or request.environ  # ASGIRequest | WSGIRequest
    rejected = holder.get("session_rejected", holder.get(WSGI_REJECTED))
    return JsonResponse(act(get_session(request), action, request.GET.dict(), rejected))


urlpatterns = [path("<str:action>", django_view)]


def django_asgi(config: SessionConfig, prefix: str) -> Any:
    return config(get_asgi_application())


def raw_wsgi(config: SessionConfig, prefix: str) -> Any:
    @config
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        state = act(
            get_session(environ),
            environ["PATH_INFO"].strip("/"),
            query(environ.get("QUERY_STRING", "")),
            environ.get(WSGI_REJECTED),
        )
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(state).encode()]

    return app


def flask_app(config: SessionConfig, prefix: str) -> Any:
    app = flask.Flask(__name__)

    @app.route("/<action>", methods=["GET", "POST"])
    def endpoint(action: str) -> Any:
        request = flask.request
        rejected = request.environ.get(WSGI_REJECTED)
        return flask.jsonify(act(get_session(request), action, request.args.to_dict(), rejected))

    return config(app)


def django_wsgi(config: SessionConfig, prefix: str) -> Any:
    return config(get_wsgi_application())


@dataclass(frozen=True)
class Framework:
    name: str
    interface: str
    build: Callable[[SessionConfig, str], Any]
    decorated: bool = True


FRAMEWORKS = [
    Framework("raw-asgi", "asgi", raw_asgi),
    Framework("starlette", "asgi", starlette),
    Framework("starlette-add-middleware", "asgi", starlette_add_middleware, decorated=False),
    Framework("fastapi", "asgi", fastapi),
    Framework("django-asgi", "asgi", django_asgi),
    Framework("raw-wsgi", "wsgi", raw_wsgi),
    Framework("flask", "wsgi", flask_app),
    Framework("django-wsgi", "wsgi", django_wsgi),
]


@pytest.fixture(autouse=True)
def django_settings() -> Iterator[None]:
    """Our URLconf and hosts, even when another test module configured Django first."""
    with override_settings(**DJANGO_SETTINGS):
        yield


# -- a browser: one cookie jar over an in-process transport ------------------------------


class Browser:
    def __init__(self, app: Any, interface: str, cookies: dict[str, str] | None = None) -> None:
        self._client: httpx.AsyncClient | httpx.Client
        if interface == "asgi":
            transport = httpx.ASGITransport(app=app)
            self._client = httpx.AsyncClient(transport=transport, base_url=BASE_URL)
        else:
            self._client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE_URL)
        if cookies:
            self._client.cookies.update(cookies)

    async def call(self, method: str, url: str) -> httpx.Response:
        if isinstance(self._client, httpx.AsyncClient):
            response = await self._client.request(method, url)
        else:
            response = self._client.request(method, url)
        assert response.status_code == 200, response.text
        return response

    async def state(self, method: str, url: str) -> dict[str, Any]:
        result: dict[str, Any] = (await self.call(method, url)).json()
        return result

    def cookie(self, name: str = "session") -> str | None:
        return self._client.cookies.get(name)


def clears_cookie(response: httpx.Response, name: str = "session") -> bool:
    return any(
        value.startswith(f"{name}=;") and "Max-Age=0" in value
        for value in response.headers.get_list("set-cookie")
    )


def added_middleware(app: Starlette) -> SessionMiddleware:
    """The SessionMiddleware that add_middleware put in a (started) Starlette app."""
    node: Any = app.middleware_stack
    while not isinstance(node, SessionMiddleware):
        node = node.app
    return node


async def close_async_client(config: SessionConfig) -> None:
    """Close the redis.asyncio pool this test's event loop opened."""
    await config.redis.async_().aclose()


ANONYMOUS: dict[str, Any] = {"user": None, "data": {}, "rejected": None}
REJECTED: dict[str, Any] = {"user": None, "data": {}, "rejected": "epoch"}


# -- the flow -----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("framework", FRAMEWORKS, ids=lambda f: f.name)
async def test_login_devices_invalidation_logout(
    framework: Framework, config: SessionConfig, key_prefix: str
) -> None:
    app = framework.build(config, key_prefix)
    if framework.decorated:
        expected = SessionMiddleware if framework.interface == "asgi" else WSGISessionMiddleware
        assert isinstance(app, expected)
    invalidate: Callable[[str], Awaitable[None]]
    if framework.interface == "asgi":
        invalidate = config.ainvalidate_user
    else:

        async def invalidate(user: str) -> None:
            config.invalidate_user(user)

    laptop = Browser(app, framework.interface)
    phone = Browser(app, framework.interface)

    response = await laptop.call("GET", "/read")
    assert response.json() == ANONYMOUS
    assert "set-cookie" not in response.headers

    assert (await laptop.state("POST", "/login?user=alice"))["user"] == "alice"
    assert laptop.cookie() is not None
    await laptop.call("POST", "/put?key=cart&value=apple")
    assert await laptop.state("GET", "/read") == {
        "user": "alice",
        "data": {"since": "login", "cart": "apple"},
        "rejected": None,
    }

    await phone.call("POST", "/login?user=alice")
    assert (await phone.state("GET", "/read"))["user"] == "alice"

    # "Log out my other devices" on the laptop: the laptop stays, the phone is out.
    assert (await laptop.state("POST", "/logout-others"))["user"] == "alice"
    assert (await laptop.state("GET", "/read"))["data"]["cart"] == "apple"
    response = await phone.call("GET", "/read")
    assert response.json() == REJECTED
    assert clears_cookie(response)
    assert phone.cookie() is None
    assert await phone.state("GET", "/read") == ANONYMOUS

    # A password reset elsewhere, outside any request, logs out every device.
    await phone.call("POST", "/login?user=alice")
    await invalidate("alice")
    for browser in (laptop, phone):
        response = await browser.call("GET", "/read")
        assert response.json() == REJECTED
        assert clears_cookie(response)

    # Logging in again works, and logout ends the session on the server too.
    await laptop.call("POST", "/login?user=alice")
    assert (await laptop.state("GET", "/read"))["user"] == "alice"
    old_cookie = laptop.cookie()
    assert old_cookie is not None
    response = await laptop.call("POST", "/logout")
    assert response.json() == ANONYMOUS
    assert clears_cookie(response)
    assert laptop.cookie() is None
    replay = Browser(app, framework.interface, cookies={"session": old_cookie})
    assert await replay.state("GET", "/read") == ANONYMOUS

    if framework.interface == "asgi":
        await close_async_client(config)
    if not framework.decorated:
        await close_async_client(added_middleware(app).config)


@pytest.mark.anyio
@pytest.mark.parametrize("framework", FRAMEWORKS, ids=lambda f: f.name)
async def test_round_trips(framework: Framework, key_prefix: str) -> None:
    """The framework adds nothing: untouched and anonymous costs 0, a logged-in read 1."""
    counter = Counter()
    client: Any
    if framework.interface == "asgi":
        client = await counted_async_client(counter)
    else:
        client = counted_sync_client(counter)
    config = sessions(secret_key=SECRET, redis=client, key_prefix=key_prefix)
    if framework.decorated:
        app = framework.build(config, key_prefix)
    else:
        app = Starlette(routes=starlette_routes())
        app.add_middleware(
            SessionMiddleware, secret_key=SECRET, redis=client, key_prefix=key_prefix
        )
    browser = Browser(app, framework.interface)

    await browser.call("GET", "/read")
    assert counter.round_trips == 0
    await browser.call("POST", "/login?user=bob")
    counter.reset()
    assert (await browser.state("GET", "/read"))["user"] == "bob"
    assert (counter.round_trips, counter.commands) == (1, ["HGETALL", "GET"])

    if framework.interface == "asgi":
        await client.connection_pool.disconnect()
    else:
        client.connection_pool.disconnect()


# -- detection and its override -----------------------------------------------------------


class Dispatcher:
    """An ASGI app whose __call__ is a plain function returning an awaitable, as some
    routers and proxies are written: detection cannot tell it from WSGI."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        return self.inner(scope, receive, send)  # type: ignore[no-any-return]


@pytest.mark.anyio
async def test_interface_override(key_prefix: str) -> None:
    starlette_app = Starlette(routes=starlette_routes())
    detected = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    assert isinstance(detected(Dispatcher(starlette_app)), WSGISessionMiddleware)

    config = sessions(
        secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, interface="asgi"
    )
    app = config(Dispatcher(starlette_app))
    assert isinstance(app, SessionMiddleware)
    browser = Browser(app, "asgi")
    await browser.call("POST", "/login?user=carol")
    assert (await browser.state("GET", "/read"))["user"] == "carol"
    await close_async_client(config)


# -- Starlette's own keywords through add_middleware ---------------------------------------


@pytest.mark.anyio
async def test_add_middleware_takes_starlettes_keywords(key_prefix: str) -> None:
    app = Starlette(routes=starlette_routes())
    app.add_middleware(
        SessionMiddleware,
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        session_cookie="sid",
        max_age=3600,
        path="/",
        same_site="strict",
        https_only=True,
        domain="testserver.local",
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver.local") as c:
        response = await c.post("/login?user=dave")
        assert response.json()["user"] == "dave"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("sid=")
        for attribute in ("Max-Age=3600", "path=/", "domain=testserver.local", "httponly"):
            assert attribute in cookie
        assert "samesite=strict" in cookie and "secure" in cookie
        assert (await c.get("/read")).json()["user"] == "dave"
        await c.post("/logout")
    await close_async_client(added_middleware(app).config)


# -- WebSocket and lifespan scopes --------------------------------------------------------


def websocket_app(config: SessionConfig) -> Any:
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        session = websocket.session
        assert isinstance(session, Session)
        errors = []
        changes: list[Callable[[], object]] = [
            lambda: session.__setitem__("x", 1),
            lambda: session.__delitem__("cart"),
            session.logout,
            session.clear,
        ]
        for change in changes:
            try:
                change()
            except RuntimeError as error:
                errors.append(str(error))
        await websocket.send_json(
            {
                "user": session.user_id,
                "data": dict(session),
                "same": session is get_session(websocket),
                "errors": errors,
                "rejected": websocket.scope.get("session_rejected"),
            }
        )
        await websocket.close()

    routes = [*starlette_routes(), WebSocketRoute("/ws", endpoint)]
    return config(Starlette(routes=routes))


@pytest.mark.anyio
async def test_websocket_sees_a_read_only_session(config: SessionConfig, key_prefix: str) -> None:
    from .support import keys_under

    app = websocket_app(config)
    browser = Browser(app, "asgi")
    await browser.call("POST", "/login?user=erin")
    await browser.call("POST", "/put?key=cart&value=pear")
    cookie = browser.cookie()

    sent = await run_websocket(app, cookie)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    seen = json.loads(sent[1]["text"])
    assert seen["user"] == "erin"
    assert seen["data"] == {"since": "login", "cart": "pear"}
    assert seen["same"] is True
    assert seen["rejected"] is None
    assert len(seen["errors"]) == 4
    assert all("read-only" in error for error in seen["errors"])
    assert (await browser.state("GET", "/read"))["data"]["cart"] == "pear"

    await config.ainvalidate_user("erin")
    sent = await run_websocket(app, cookie)
    seen = json.loads(sent[1]["text"])
    assert (seen["user"], seen["data"], seen["rejected"]) == (None, {}, "epoch")
    assert not [key for key in keys_under(key_prefix) if ":s:" in key]  # stale record deleted

    sent = await run_websocket(app, None)
    assert json.loads(sent[1]["text"])["user"] is None
    await close_async_client(config)


@pytest.mark.anyio
async def test_lifespan_passes_through_untouched(unused_port: int) -> None:
    """Lifespan never touches Redis: here Redis is a closed port and start-up still works."""
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    config = sessions(secret_key=SECRET, redis_url=f"redis://127.0.0.1:{unused_port}/0")
    wrapped = config(app)
    scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await wrapped(scope, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    assert seen == [scope]
    assert seen[0] is scope
    assert set(scope) == {"type", "asgi", "state"}


@pytest.mark.anyio
async def test_starlette_lifespan_runs_behind_the_decorator(unused_port: int) -> None:
    from contextlib import asynccontextmanager

    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        events.append("startup")
        yield
        events.append("shutdown")

    config = sessions(secret_key=SECRET, redis_url=f"redis://127.0.0.1:{unused_port}/0")
    app = config(Starlette(routes=starlette_routes(), lifespan=lifespan))
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert events == ["startup", "shutdown"]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- caches ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("probe", ["user_id", "contains", "len"])
async def test_a_page_chosen_by_the_session_varies_on_cookie(
    config: SessionConfig, probe: str
) -> None:
    @config
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        session = get_session(scope)
        signed_in = {
            "user_id": lambda: session.user_id is not None,
            "contains": lambda: "cart" in session,
            "len": lambda: len(session) > 0,
        }[probe]()
        body = b"profile" if signed_in else b"sign-in form"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        response = await c.get("/")
    assert response.text == "sign-in form"
    assert "cookie" in response.headers.get("vary", "").lower()
