"""The ASGI driver: moves bytes between the ASGI server and the core, on redis.asyncio."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from . import unavailable
from .clients import UNAVAILABLE
from .config import ConfiguredMiddleware
from .core import Opened
from .headers import session_headers

Scope = dict[str, Any]
Message = dict[str, Any]

_STARTED = "the response has started: session changes can no longer be saved"
_WEBSOCKET = "the session is read-only in a WebSocket handler"


class SessionMiddleware(ConfiguredMiddleware):
    """ASGI middleware giving every HTTP and WebSocket request `scope["session"]`.

    Use it as ``app.add_middleware(SessionMiddleware, secret_key=..., redis_url=...)``
    with the keywords of `sessions(...)` (a superset of Starlette's SessionMiddleware),
    or get one from the decorator: ``app = sessions(...)(app)``.
    """

    interface = "asgi"

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        try:
            step = self._core.open(_cookie_header(scope), time.time(), lambda: _client(scope))
            opened = await self.config.run_async(step)
        except UNAVAILABLE:
            if self._fail_open:
                raise
            await _refuse(kind, send)
            return
        scope["session"] = opened.session
        if opened.rejected is not None:
            scope["session_rejected"] = opened.rejected
        if kind == "websocket":
            await self._websocket(opened, scope, receive, send)
        else:
            await self._http(opened, scope, receive, send)

    async def _http(self, opened: Opened, scope: Scope, receive: Any, send: Any) -> None:
        refused = False

        async def send_with_session(message: Message) -> None:
            nonlocal refused
            if refused:
                return
            if message["type"] == "http.response.start":
                opened.session.freeze(_STARTED)
                try:
                    now = time.time()
                    committed = self._core.settled(opened, now) or await self.config.run_async(
                        self._core.commit(opened, now)
                    )
                except UNAVAILABLE:
                    if self._fail_open:
                        raise
                    refused = True
                    await _refuse("http", send)
                    return
                headers = message.get("headers", ())
                added = session_headers(
                    ((n.decode("latin-1"), v.decode("latin-1")) for n, v in headers),
                    committed.set_cookie,
                    committed.depends_on_session,
                )
                if added:
                    encoded = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in added]
                    message = {**message, "headers": [*headers, *encoded]}
            await send(message)

        await self.app(scope, receive, send_with_session)

    async def _websocket(self, opened: Opened, scope: Scope, receive: Any, send: Any) -> None:
        opened.session.freeze(_WEBSOCKET)
        try:
            await self.app(scope, receive, send)
        finally:
            if opened.cleanup:
                # A stale record left behind here still expires by its own TTL.
                with contextlib.suppress(*UNAVAILABLE):
                    await self.config.run_async(self._core.commit(opened, time.time()))


def _client(scope: Scope) -> tuple[str | None, str | None]:
    agents = [value for name, value in scope["headers"] if name == b"user-agent"]
    client = scope.get("client")
    return (agents[0].decode("latin-1") if agents else None, client[0] if client else None)


def _cookie_header(scope: Scope) -> str | None:
    found = [value for name, value in scope["headers"] if name == b"cookie"]
    if not found:
        return None
    return "; ".join(value.decode("latin-1") for value in found)


async def _refuse(kind: str, send: Any) -> None:
    if kind == "websocket":
        await send({"type": "websocket.close", "code": unavailable.WEBSOCKET_CLOSE_CODE})
        return
    await send(
        {
            "type": "http.response.start",
            "status": unavailable.STATUS,
            "headers": [(k.encode(), v.encode()) for k, v in unavailable.HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": unavailable.BODY})
