"""The ASGI driver: moves bytes between the ASGI server and the core, on redis.asyncio."""

from __future__ import annotations

import contextlib
import logging

from . import _fail_closed as unavailable
from ._asgi_types import ASGIApp, Message, Receive, Scope, Send
from ._core.lifecycle import Opened
from ._middleware import ConfiguredMiddleware
from ._request_cycle import RequestCycle, client_of_scope, publish, response_headers
from ._transport.clients import ready_cluster, running_asyncio_loop
from ._websocket_guard import SESSION_ENDED_CLOSE_CODE as SESSION_ENDED_CLOSE_CODE
from ._websocket_guard import WebSocketClosed as WebSocketClosed
from ._websocket_guard import WebSocketGuard
from .errors import StoreUnavailable

logger = logging.getLogger("session_middleware")

_WEBSOCKET = "the session is read-only in a WebSocket handler"


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
        opened = None
        if self._ready or await self._got_ready():
            opened = await self._cycle.aopen(_cookie_header(scope), client_of_scope(scope))
        if opened is None:
            await unavailable.send_asgi(kind, send)
            return
        publish(opened, scope, "session", "session_rejected")
        if kind == "websocket":
            await self._websocket(opened, scope, receive, send)
        else:
            await self.app(scope, receive, _SendWithSession(self._cycle, opened, send))

    async def _got_ready(self) -> bool:
        """Whether the store is ready for a request's session (see _get_ready); False: it
        is not, and the request gets the 503."""
        try:
            await self._get_ready()
        except StoreUnavailable:
            if not self._cycle.fails_closed:
                raise
            return False
        return True

    async def _get_ready(self) -> None:
        """Have a cluster client read the cluster's layout before its first command (see
        _transport/cluster_clients.py); any failure is the store being unavailable."""
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

    async def _websocket(self, opened: Opened, scope: Scope, receive: Receive, send: Send) -> None:
        opened.session.freeze(_WEBSOCKET)
        guard = (
            None
            if opened.record is None
            else WebSocketGuard(self, opened, _cookie_header(scope), client_of_scope(scope), send)
        )
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
                await self._cycle.acommit(opened, frozen=None)


class _SendWithSession:
    """The app's `send`: the session is committed when the response starts, and the
    response gains its headers, or is the 503 when the store could not save it. One
    object, not a closure: it is alive, with the app's whole stack, while a write awaits
    Redis (see docs/performance.md, the garbage collector)."""

    __slots__ = ("cycle", "opened", "refused", "send")

    def __init__(self, cycle: RequestCycle, opened: Opened, send: Send) -> None:
        self.cycle = cycle
        self.opened = opened
        self.send = send
        self.refused = False

    async def __call__(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            committed = await self.cycle.acommit(self.opened)
            if committed is None:
                self.refused = True
                await unavailable.send_asgi("http", self.send)
                return
            headers = message.get("headers", ())
            added = response_headers(committed, headers)
            if added:
                encoded = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in added]
                message = {**message, "headers": [*headers, *encoded]}
        await self.send(message)


def _cookie_header(scope: Scope) -> str | None:
    found: list[bytes] = [value for name, value in scope["headers"] if name == b"cookie"]
    if len(found) == 1:
        return found[0].decode("latin-1")
    if not found:
        return None
    return "; ".join(value.decode("latin-1") for value in found)
