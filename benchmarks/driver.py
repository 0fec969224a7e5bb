"""A minimal ASGI driver: a scope dict, a receive that gives the request once, a send that
collects. An HTTP client in the loop would cost more than the middleware being measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

App = Any


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name]

    def set_cookie(self, cookie_name: str) -> str | None:
        """The value the response sets for `cookie_name`, or None."""
        for value in self.header(b"set-cookie"):
            pair = value.decode("latin-1").split(";", 1)[0]
            name, _, cookie = pair.partition("=")
            if name.strip() == cookie_name:
                return cookie.strip()
        return None


class Request:
    """One prepared request, sent as many times as needed."""

    def __init__(self, method: str, path: str, cookie: str | None = None) -> None:
        headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench")]
        if cookie is not None:
            headers.append((b"cookie", cookie.encode("latin-1")))
        self._scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }

    async def send(self, app: App) -> None:
        """Run the request; the response is discarded."""

        async def send(message: dict[str, Any]) -> None:
            return None

        await app(dict(self._scope), _receive_once(), send)

    async def fetch(self, app: App) -> Response:
        """Run the request and keep the response (for set-up and checks, not timing)."""
        response = Response()

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response.status = message["status"]
                response.headers = list(message.get("headers", ()))
            elif message["type"] == "http.response.body":
                response.body += message.get("body", b"")

        await app(dict(self._scope), _receive_once(), send)
        return response


def _receive_once() -> Any:
    """An ASGI receive that gives an empty request body once, then a disconnect."""
    given = False

    async def receive() -> dict[str, Any]:
        nonlocal given
        if given:
            return {"type": "http.disconnect"}
        given = True
        return {"type": "http.request", "body": b"", "more_body": False}

    return receive
