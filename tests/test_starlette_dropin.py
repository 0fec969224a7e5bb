"""Swapping Starlette's SessionMiddleware for ours is one import line: the same keywords and
types, a session that is a dict, the same cookie spelling and Vary behaviour, and no
connection left open by a test client's short-lived event loops."""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from session_middleware import ConfigurationError, Session, SessionConfig, SessionMiddleware
from session_middleware._transport.clients import running_asyncio_loop

from .support import REDIS_URL, SECRET
from .support.redis_servers import RedisServer, server

__all__ = ["server"]  # the fixture

pytestmark = pytest.mark.anyio


async def view(request: Request) -> JSONResponse:
    return JSONResponse({"session": request.session})


async def update(request: Request) -> JSONResponse:
    session = request.session
    session |= await request.json()
    return JSONResponse({"session": request.session})


async def untouched(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def app(key_prefix: str, *args: Any, **options: Any) -> Starlette:
    options = {"redis_url": REDIS_URL, "key_prefix": key_prefix, **options}
    return Starlette(
        routes=[
            Route("/view", view),
            Route("/update", update, methods=["POST"]),
            Route("/untouched", untouched),
        ],
        middleware=[Middleware(SessionMiddleware, *args, **options)],
    )


def client(application: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://t")


async def test_the_key_positional_or_a_starlette_secret(key_prefix: str) -> None:
    for application in (app(key_prefix, SECRET), app(key_prefix, secret_key=Secret(SECRET))):
        async with client(application) as browser:
            await browser.post("/update", json={"a": 1})
            assert (await browser.get("/view")).json() == {"session": {"a": 1}}


async def test_the_app_by_keyword_as_starlette_up_to_0_41_builds_middleware(
    key_prefix: str,
) -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await Starlette(routes=[Route("/update", update, methods=["POST"])])(scope, receive, send)

    options: dict[str, Any] = {"redis_url": REDIS_URL, "key_prefix": key_prefix}
    for application in (  # cls(*args, app=app, **kwargs), the key by keyword or by position
        SessionMiddleware(app=inner, secret_key=SECRET, **options),
        SessionMiddleware(SECRET, app=inner, **options),
    ):
        async with client(application) as browser:
            response = await browser.post("/update", json={"a": 1})
            assert response.json() == {"session": {"a": 1}}


async def test_the_session_is_a_dict_json_can_serialise(key_prefix: str) -> None:
    async with client(app(key_prefix, SECRET)) as browser:
        response = await browser.post("/update", json={"a": 1, "b": [2]})
        assert response.json() == {"session": {"a": 1, "b": [2]}}
    session = Session({"a": 1, "b": 2})
    assert isinstance(session, dict) and json.loads(json.dumps(session)) == {"a": 1, "b": 2}
    assert session.copy() == {"a": 1, "b": 2} and type(session.copy()) is dict
    assert session | {"c": 3} == {"a": 1, "b": 2, "c": 3}
    assert session.popitem() == ("b", 2), "the last pair, as dict"
    assert not Session({"a": 1}).modified


async def test_vary_only_when_the_session_was_used(key_prefix: str) -> None:
    async with client(app(key_prefix, SECRET)) as browser:
        await browser.post("/update", json={"a": 1})
        assert "cookie" in (await browser.get("/view")).headers.get("vary", "").lower()
        untouched_response = await browser.get("/untouched")
        assert "vary" not in untouched_response.headers
        assert "set-cookie" not in untouched_response.headers


async def test_a_change_sends_the_cookie_again_a_read_does_not(key_prefix: str) -> None:
    async with client(app(key_prefix, SECRET)) as browser:
        first = (await browser.post("/update", json={"a": 1})).headers["set-cookie"]
        again = (await browser.post("/update", json={"b": 2})).headers["set-cookie"]
        assert first.split(";")[0] == again.split(";")[0], "the same session id"
        assert "; path=/; Max-Age=" in again and "; httponly; samesite=lax" in again
        assert "set-cookie" not in (await browser.get("/view")).headers


async def test_max_age_zero_and_none_spell_the_cookie_as_starlette(key_prefix: str) -> None:
    async with client(app(key_prefix, SECRET, max_age=0)) as browser:
        assert (
            "; Max-Age=0; " in (await browser.post("/update", json={"a": 1})).headers["set-cookie"]
        )
    async with client(app(key_prefix, SECRET, max_age=None)) as browser:
        assert "Max-Age" not in (await browser.post("/update", json={"a": 1})).headers["set-cookie"]


def test_a_loop_that_ends_leaves_no_connection_open(server: RedisServer) -> None:
    application = app("dropin:", SECRET, redis_url=server.url)

    async def one_request() -> None:
        async with client(application) as browser:
            await browser.post("/update", json={"a": 1})

    with warnings.catch_warnings(record=True) as caught, server.client() as watcher:
        warnings.simplefilter("always")
        for _ in range(3):  # a new loop each time, as a test client without `with` does
            asyncio.run(one_request())
        gc.collect()
        assert watcher.info("clients")["connected_clients"] == 1, "only the watcher's"
    ours = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert [message for message in ours if f"port={server.port}" in message] == []


def test_another_event_loop_gets_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="asyncio event loop"):
        running_asyncio_loop()


async def test_lifetimes_may_be_timedeltas(key_prefix: str) -> None:
    from datetime import timedelta

    config = SessionConfig(
        secret_key=SECRET,
        key_prefix=key_prefix,
        max_age=timedelta(hours=1),
        idle_timeout=timedelta(minutes=10),
        refresh_interval=timedelta(seconds=30),
    )
    assert (config.core.timing.lifetime, config.core.timing.idle_timeout) == (3600, 600)
    assert config.core.timing.refresh_interval == 30.0
    with pytest.raises(ConfigurationError, match="whole number"):
        SessionConfig(secret_key=SECRET, max_age=timedelta(seconds=1.5))


@pytest.mark.parametrize("face", ["asgi", "wsgi"])
async def test_excluded_paths_pass_through_without_a_redis_read(key_prefix: str, face: str) -> None:
    from .support.apps import asgi_app as session_app
    from .support.apps import wsgi_app as wsgi_session_app
    from .support.counting import Counter, counted_async_client, counted_sync_client

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        if not scope["path"].startswith("/static/"):
            return await session_app(scope, receive, send)
        assert "session" not in scope
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"css"})

    def wsgi_app(environ: Any, start_response: Any) -> Any:
        if not environ["PATH_INFO"].startswith("/static/"):
            return wsgi_session_app(environ, start_response)
        assert "session_middleware.session" not in environ
        start_response("200 OK", [])
        return [b"css"]

    counter = Counter()
    client: Any = (
        await counted_async_client(counter) if face == "asgi" else counted_sync_client(counter)
    )
    config = SessionConfig(
        secret_key=SECRET, redis=client, key_prefix=key_prefix, exclude_paths=["/static/"]
    )
    if face == "asgi":
        transport: Any = httpx.ASGITransport(app=config(asgi_app))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as browser:
            await browser.get("/set?key=a&value=1")
            counter.reset()
            response = await browser.get("/static/app.css")
    else:
        transport = httpx.WSGITransport(app=config(wsgi_app))
        with httpx.Client(transport=transport, base_url="http://t") as sync_browser:
            sync_browser.get("/set?key=a&value=1")
            counter.reset()
            response = sync_browser.get("/static/app.css")
    if face == "asgi":
        await client.aclose()
    else:
        client.close()
    assert response.status_code == 200 and counter.round_trips == 0
    assert "set-cookie" not in response.headers and "vary" not in response.headers
    with pytest.raises(ConfigurationError):
        SessionConfig(secret_key=SECRET, exclude_paths="/static/")
