"""The response a request gets when the session store cannot be reached (fail closed)."""

from __future__ import annotations

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
