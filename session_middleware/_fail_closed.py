"""Fail closed, in one place: which failures mean the session store cannot vouch for a
session, whether the app answers them with the 503 (the `on_redis_error` setting), and
that answer, as each interface sends it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from ._transport.clients import REDIS_ERRORS
from ._transport.urls import redact_url
from .errors import StoreUnavailable
from .events import SessionEvent

logger = logging.getLogger("session_middleware")

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


# At most one WARNING line per configuration this many seconds apart while the store fails.
LOG_INTERVAL = 10.0


class OutageLog:
    """The WARNING line of every refusal for want of the store (the 503, or the error a
    user operation raises): the operation, where the store is (its password masked) and
    the error. Under an outage, one line per `interval` seconds, the next one counting
    those left out."""

    def __init__(
        self,
        where: str,
        interval: float = LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = where
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._next_line_at: float | None = None
        self._left_out = 0

    def __call__(self, event: SessionEvent) -> None:
        now = self._clock()
        with self._lock:
            if self._next_line_at is not None and now < self._next_line_at:
                self._left_out += 1
                return
            left_out, self._left_out = self._left_out, 0
            self._next_line_at = now + self._interval
        since = f" ({left_out} more since the last line)" if left_out else ""
        error = event.error if event.error is not None else "unknown error"
        logger.warning("%s (Redis at %s)%s", error, self.where, since)


def describe_store(redis_url: str | None, client: Any) -> str:
    """Where the session Redis is, for a log line: the URL with its password masked, or
    the host, port and db of a client given as ``redis=``."""
    if redis_url is not None:
        return redact_url(redis_url)
    pool = getattr(client, "connection_pool", None)
    options = getattr(pool, "connection_kwargs", None) or {}
    if "host" in options:
        return f"{options['host']}:{options.get('port', 6379)}/{options.get('db', 0)}"
    return type(client).__name__


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
