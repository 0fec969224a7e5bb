"""The WebSocket guard of the ASGI driver: closes an open WebSocket once its session ends."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from . import _fail_closed as unavailable
from ._asgi_types import Message, Receive, Send
from ._core.lifecycle import ClientInfo, Opened
from ._transport.local_cache import CachedRedis

if TYPE_CHECKING:
    from .asgi import SessionMiddleware

SESSION_ENDED_CLOSE_CODE = 1008  # policy violation: the session was ended meanwhile


class WebSocketClosed(OSError):
    """Raised by `send` in a WebSocket handler once the middleware closed the WebSocket
    because its session ended (ASGI servers raise an OSError for a closed connection too,
    and Starlette turns it into WebSocketDisconnect)."""


class WebSocketGuard:
    """Verifies an open WebSocket's session again, by running the core's open step with the
    handshake's cookie: at most `websocket_recheck` seconds apart, and at once when the local
    cache hears that the session's record or epoch changed. Checked whenever the handler
    sends or receives, and while it waits in receive(); a session that ended closes the
    WebSocket with 1008, one that cannot be verified (Redis down) with 1013."""

    def __init__(
        self,
        middleware: SessionMiddleware,
        opened: Opened,
        cookie_header: str | None,
        client_info: ClientInfo,
        send: Send,
    ) -> None:
        self._middleware = middleware
        self._opened = opened
        self._cookie = cookie_header
        self._client_info = client_info
        self._send = send
        self._interval = middleware.config.websocket_recheck
        self._due = time.monotonic() + self._interval
        self._changed = False
        self._wake: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self._closed = False  # a close was sent or a disconnect received: nothing to guard
        self._ended: int | None = None  # the close code, once the guard closed it

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Hear from the local cache (if on) when the session's keys change."""
        client = self._middleware.config.redis.async_()
        if not isinstance(client, CachedRedis):
            yield
            return
        cache = client.cache
        loop = asyncio.get_running_loop()
        core = self._middleware._cycle.core
        ref, handle = self._opened.ref, self._opened.session.handle
        assert ref is not None and handle is not None
        keys = [core.keys.record_key(ref.tag, handle), core.provider.cached_key(ref.tag)]

        def changed() -> None:  # called from the cache's listener thread
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._on_change)

        unwatch = cache.watch([key for key in keys if key is not None], changed)
        try:
            yield
        finally:
            unwatch()

    def _on_change(self) -> None:
        self._changed = True
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def receiver(self, receive: Receive) -> Receive:
        async def receive_verified() -> Message:
            if self._ended is not None:
                return {"type": "websocket.disconnect", "code": self._ended}
            pending = asyncio.ensure_future(receive())
            try:
                while True:
                    if not await self._still_valid():
                        return {"type": "websocket.disconnect", "code": self._ended}
                    if pending.done():
                        message: Message = pending.result()
                        if message["type"] == "websocket.disconnect":
                            self._closed = True
                        return message
                    self._wake = asyncio.get_running_loop().create_future()
                    timeout = max(self._due - time.monotonic(), 0.0)
                    await asyncio.wait(
                        (pending, self._wake), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                    self._wake = None
            finally:
                if not pending.done():
                    pending.cancel()

        return receive_verified

    async def send(self, message: Message) -> None:
        if not await self._still_valid():
            if message["type"] == "websocket.close":
                return  # closed already
            raise WebSocketClosed(f"the session ended: the WebSocket was closed ({self._ended})")
        if message["type"] == "websocket.close":
            self._closed = True
        await self._send(message)

    async def _still_valid(self) -> bool:
        if self._ended is not None:
            return False
        if self._closed or not (self._changed or time.monotonic() >= self._due):
            return True
        async with self._lock:
            if self._ended is None and (self._changed or time.monotonic() >= self._due):
                self._changed = False
                await self._verify()
                self._due = time.monotonic() + self._interval
        return self._ended is None

    async def _verify(self) -> None:
        middleware = self._middleware
        now = await middleware._cycle.aopen(self._cookie, self._client_info)
        if now is None:
            await self._close(unavailable.WEBSOCKET_CLOSE_CODE)
            return
        if now.record is not None and now.session.user_id == self._opened.session.user_id:
            return
        await middleware._clean_up(now)
        await self._close(SESSION_ENDED_CLOSE_CODE)

    async def _close(self, code: int) -> None:
        self._ended = code
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError):
                await self._send({"type": "websocket.close", "code": code})
