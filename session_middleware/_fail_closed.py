"""Fail closed, in one place: which failures mean the session store cannot vouch for a
session, whether the app answers them with the 503 (the `on_redis_error` setting), and
that answer, as each interface sends it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from ._redis.clients import REDIS_ERRORS
from .errors import StoreUnavailable

# What a driver or an integration answers with the 503.
FAILURES: tuple[type[Exception], ...] = (StoreUnavailable, *REDIS_ERRORS)

STATUS = 503
REASON = "Service Unavailable"
BODY = b"Service unavailable: the session store cannot be reached. Please retry shortly.\n"
HEADERS: list[tuple[str, str]] = [
    ("content-type", "text/plain; charset=utf-8"),
    ("content-length", str(len(BODY))),
    ("cache-control", "no-store"),
    ("retry-after", "5"),
]
# Close code for a WebSocket refused for the same reason ("try again later").
WEBSOCKET_CLOSE_CODE = 1013
WSGI_STATUS = f"{STATUS} {REASON}"


def answers_503(on_redis_error: Literal["503", "raise"]) -> bool:
    """Whether a failure is answered with the 503 ('503', the default) or left to the
    app's own error handling ('raise')."""
    return on_redis_error == "503"


def headers_without_length() -> list[tuple[str, str]]:
    """The 503's headers for a framework that sets Content-Length itself."""
    return [(name, value) for name, value in HEADERS if name != "content-length"]


async def send_asgi(kind: str, send: Callable[[Any], Awaitable[None]]) -> None:
    """The 503 as an ASGI response, or the WebSocket refused with WEBSOCKET_CLOSE_CODE."""
    if kind == "websocket":
        await send({"type": "websocket.close", "code": WEBSOCKET_CLOSE_CODE})
        return
    await send(
        {
            "type": "http.response.start",
            "status": STATUS,
            "headers": [(k.encode(), v.encode()) for k, v in HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": BODY})
