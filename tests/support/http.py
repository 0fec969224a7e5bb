"""Requests to an app in-process: raw ASGI and WSGI calls, httpx clients over the apps of
tests/support/apps.py, and what a response's Set-Cookie says."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from session_middleware import SessionConfig

from .apps import asgi_app, wsgi_app


def set_cookie_attributes(header: str) -> tuple[str, set[str]]:
    """The cookie's name=value pair, and its attributes in lower case (browsers read
    attribute names case-insensitively; the cookie is spelt as Starlette spells it)."""
    pair, *attributes = [part.strip() for part in header.split(";")]
    return pair, {attribute.lower() for attribute in attributes}


def wsgi_call(app: Any, target: str, cookie: str | None = None) -> tuple[str, dict[str, str], Any]:
    """One request through a WSGI app, in-process; returns status, headers, parsed body."""
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "t",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
    }
    if cookie is not None:
        environ["HTTP_COOKIE"] = cookie
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, headers))
        return lambda data: None

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    status, headers = started[-1]
    return status, {name.lower(): value for name, value in headers}, parsed(body)


async def asgi_call(
    app: Any, target: str, cookie_headers: Sequence[bytes]
) -> tuple[int, dict[str, str], Any]:
    """One request through an ASGI app, in-process, with these raw Cookie header values."""
    path, _, query = target.partition("?")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"t"), *((b"cookie", value) for value in cookie_headers)],
        "client": ("127.0.0.1", 50000),
        "server": ("t", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, *rest = sent
    headers = {n.decode("latin-1"): v.decode("latin-1") for n, v in start["headers"]}
    return start["status"], headers, parsed(b"".join(m.get("body", b"") for m in rest))


def parsed(body: bytes) -> Any:
    """The test apps answer JSON; the middleware's own 503 is plain text."""
    return json.loads(body) if body.startswith(b"{") else body.decode()


def cookie_of(headers: dict[str, str]) -> str:
    return headers["set-cookie"].split(";")[0].split("=", 1)[1]


BASE_URL = "http://testserver"


def asgi_client_of(app: Any) -> httpx.AsyncClient:
    """An httpx client of any ASGI app, in-process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


def wsgi_client_of(app: Any) -> httpx.Client:
    """An httpx client of any WSGI app, in-process."""
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE_URL)


def asgi_client(config: SessionConfig, cookie: str | None = None) -> httpx.AsyncClient:
    """A client of the ASGI app of tests/support/apps.py under `config`, holding `cookie` as
    its session cookie if one is given."""
    client = asgi_client_of(config(asgi_app))
    if cookie is not None:
        client.cookies.set("session", cookie)
    return client


def wsgi_client(config: SessionConfig) -> httpx.Client:
    """A client of the WSGI app of tests/support/apps.py under `config`."""
    return wsgi_client_of(config(wsgi_app))


async def logged_in_cookie(config: SessionConfig, user: str = "alice") -> str:
    async with asgi_client(config) as client:
        response = await client.get(f"/login?user={user}")
    return response.cookies["session"]


async def read_with(config: SessionConfig, cookie_header: str) -> httpx.Response:
    async with asgi_client(config) as client:
        return await client.get("/read", headers={"cookie": cookie_header.encode("utf-8")})


async def run_websocket(app: Any, cookie: str | None) -> list[dict[str, Any]]:
    """One WebSocket connection: connect, then whatever the app sends until it closes."""
    headers = [(b"host", b"testserver")]
    if cookie is not None:
        headers.append((b"cookie", f"session={cookie}".encode()))
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "headers": headers,
        "subprotocols": [],
    }
    incoming = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent
