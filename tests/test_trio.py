"""Under trio, a clear RuntimeError that names trio, never the 503 blaming Redis.

redis.asyncio runs on asyncio only. An app served on trio fails at its lifespan start-up
(the middleware answers ``lifespan.startup.failed`` with the reason, then raises), and,
with a server that sends no lifespan, at every request, with the same RuntimeError.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from session_middleware import SessionConfig, SessionMiddleware

from .support import REDIS_URL, SECRET
from .support.apps import asgi_app

pytest.importorskip("trio")

NAMES_TRIO = r"asyncio event loop .*trio"


def starlette_app(key_prefix: str) -> Starlette:
    async def count(request: Request) -> JSONResponse:
        request.session["n"] = request.session.get("n", 0) + 1
        return JSONResponse(request.session["n"])

    app = Starlette(routes=[Route("/", count)])
    app.add_middleware(
        SessionMiddleware, secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix
    )
    return app


async def request_once(app: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get("/", headers={"cookie": "session=x.y.z"})


@pytest.mark.parametrize("which", ["raw", "starlette"])
def test_a_request_on_trio_raises_the_runtime_error_that_names_trio(
    which: str, config: SessionConfig, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = config(asgi_app) if which == "raw" else starlette_app(key_prefix)
    with pytest.raises(RuntimeError, match=NAMES_TRIO):
        anyio.run(request_once, app, backend="trio")
    assert not any("unavailable" in r.getMessage() for r in caplog.records)


def test_the_same_app_still_serves_on_asyncio(key_prefix: str) -> None:
    app = starlette_app(key_prefix)
    with pytest.raises(RuntimeError, match=NAMES_TRIO):
        anyio.run(request_once, app, backend="trio")
    response = anyio.run(request_once, app, backend="asyncio")
    assert response.status_code == 200 and response.json() == 1


def test_lifespan_start_up_on_trio_fails_with_the_reason(config: SessionConfig) -> None:
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def lifespan() -> None:
        await config(asgi_app)({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    with pytest.raises(RuntimeError, match=NAMES_TRIO):
        anyio.run(lifespan, backend="trio")
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "trio" in sent[0]["message"]


def test_starlette_testclient_on_trio_refuses_to_start(key_prefix: str) -> None:
    from starlette.testclient import TestClient

    client = TestClient(starlette_app(key_prefix), backend="trio")
    with pytest.raises(RuntimeError, match=NAMES_TRIO), client:
        client.get("/")
