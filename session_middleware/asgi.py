"""The ASGI driver: moves bytes between the ASGI server and the core, on redis.asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator

from . import _fail_closed as unavailable
from ._asgi_types import ASGIApp, Message, Receive, Scope, Send
from ._configuration import ConfiguredMiddleware
from ._core.lifecycle import Opened
from ._core.runners import drive_async
from ._redis.clients import ready_cluster, running_asyncio_loop
from ._redis.local_cache import CachedRedis
from ._response_headers import session_headers
from .errors import StoreUnavailable

logger = logging.getLogger("session_middleware")

_STARTED = "the response has started: session changes can no longer be saved"
_WEBSOCKET = "the session is read-only in a WebSocket handler"
SESSION_ENDED_CLOSE_CODE = 1008  # policy violation: the session was ended meanwhile


class SessionMiddleware(ConfiguredMiddleware):
    """ASGI middleware giving every HTTP and WebSocket request `scope["session"]`.

    Use it as ``app.add_middleware(SessionMiddleware, secret_key=..., redis_url=...)``
    with the keywords of `sessions(...)` (a superset of Starlette's SessionMiddleware),
    or get one from the decorator: ``app = sessions(...)(app)``.
    """

    interface = "asgi"
    app: ASGIApp
    _ready = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, self._getting_ready(receive, send), send)
            return
        if (kind != "http" and kind != "websocket") or self._excluded(scope["path"]):
            await self.app(scope, receive, send)
            return
        running_asyncio_loop()  # on trio: its RuntimeError, never the 503 blaming Redis
        try:
            if not self._ready:
                await self._get_ready()
            config = self.config
            step = self._core.open(_cookie_header(scope), time.time(), lambda: _client(scope))
            opened = await drive_async(step, config.redis, config.listeners)
        except unavailable.FAILURES:
            if self._fail_open:
                raise
            await unavailable.send_asgi(kind, send)
            return
        scope["session"] = opened.session
        if opened.rejected is not None:
            scope["session_rejected"] = opened.rejected
        if kind == "websocket":
            await self._websocket(opened, scope, receive, send)
        else:
            await self._http(opened, scope, receive, send)

    async def _get_ready(self) -> None:
        """Have a cluster client read the cluster's layout before its first command (see
        _redis/cluster_clients.py); any failure is the store being unavailable."""
        try:
            await ready_cluster(self.config.redis.async_())
        except Exception as error:
            raise StoreUnavailable(f"the session store failed: {type(error).__name__}") from error
        self._ready = True

    def _getting_ready(self, receive: Receive, send: Send) -> Receive:
        """`receive`, getting ready at the server's lifespan start-up; a store that cannot
        be reached then does not stop the app starting (its requests get the 503). On an
        event loop that is not asyncio (trio), the start-up fails: the server hears why
        (``lifespan.startup.failed``), and the RuntimeError is raised."""

        async def receive_and_get_ready() -> Message:
            message: Message = await receive()
            if message.get("type") == "lifespan.startup":
                try:
                    running_asyncio_loop()
                except RuntimeError as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    raise
            if message.get("type") == "lifespan.startup" and not self._ready:
                try:
                    await self._get_ready()
                except StoreUnavailable:
                    logger.warning("the session store could not be reached at start-up")
            return message

        return receive_and_get_ready

    async def _http(self, opened: Opened, scope: Scope, receive: Receive, send: Send) -> None:
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
                except unavailable.FAILURES:
                    if self._fail_open:
                        raise
                    refused = True
                    await unavailable.send_asgi("http", send)
                    return
                headers = message.get("headers", ())
                added = session_headers(headers, committed.set_cookie, committed.depends_on_session)
                if added:
                    encoded = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in added]
                    message = {**message, "headers": [*headers, *encoded]}
            await send(message)

        await self.app(scope, receive, send_with_session)

    async def _websocket(self, opened: Opened, scope: Scope, receive: Receive, send: Send) -> None:
        opened.session.freeze(_WEBSOCKET)
        guard = None if opened.record is None else _WebSocketGuard(self, opened, scope, send)
        try:
            if guard is None:
                await self.app(scope, receive, send)
            else:
                with guard.watching():
                    await self.app(scope, guard.receiver(receive), guard.send)
        finally:
            await self._clean_up(opened)

    async def _clean_up(self, opened: Opened) -> None:
        if opened.cleanup:
            # A stale record left behind here still expires by its own TTL.
            with contextlib.suppress(*unavailable.FAILURES):
                await self.config.run_async(self._core.commit(opened, time.time()))


class WebSocketClosed(OSError):
    """Raised by `send` in a WebSocket handler once the middleware closed the WebSocket
    because its session ended (ASGI servers raise an OSError for a closed connection too,
    and Starlette turns it into WebSocketDisconnect)."""


class _WebSocketGuard:
    """Verifies an open WebSocket's session again, by running the core's open step with the
    handshake's cookie: at most `websocket_recheck` seconds apart, and at once when the local
    cache hears that the session's record or epoch changed. Checked whenever the handler
    sends or receives, and while it waits in receive(); a session that ended closes the
    WebSocket with 1008, one that cannot be verified (Redis down) with 1013."""

    def __init__(
        self, middleware: SessionMiddleware, opened: Opened, scope: Scope, send: Send
    ) -> None:
        self._middleware = middleware
        self._opened = opened
        self._cookie = _cookie_header(scope)
        self._client_info = lambda: _client(scope)
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
        core, ref, handle = self._middleware._core, self._opened.ref, self._opened.session.handle
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
        step = middleware._core.open(self._cookie, time.time(), self._client_info)
        try:
            now = await middleware.config.run_async(step)
        except unavailable.FAILURES:
            if middleware._fail_open:
                raise
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


def _client(scope: Scope) -> tuple[str | None, str | None]:
    agents = [value for name, value in scope["headers"] if name == b"user-agent"]
    client = scope.get("client")
    return (agents[0].decode("latin-1") if agents else None, client[0] if client else None)


def _cookie_header(scope: Scope) -> str | None:
    found: list[bytes] = [value for name, value in scope["headers"] if name == b"cookie"]
    if len(found) == 1:
        return found[0].decode("latin-1")
    if not found:
        return None
    return "; ".join(value.decode("latin-1") for value in found)
