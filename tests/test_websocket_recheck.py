"""An open WebSocket does not outlive its session: it is verified again while it is open,
and closed with 1008 once the session was ended (1013 when it cannot be verified)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from session_middleware import SessionConfig, get_session, sessions
from session_middleware.asgi import WebSocketClosed

from .support import REDIS_URL, SECRET
from .support.apps import asgi_app
from .support.http import run_websocket
from .support.local_cache import ready
from .support.redis_servers import server  # noqa: F401  (a fixture: a private redis-server)

pytestmark = pytest.mark.anyio

BOUND = 10.0  # no test waits longer than this for what it expects
ENDED = {"type": "websocket.close", "code": 1008}

Message = dict[str, Any]


async def echo_user(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every message with the session's user; idles in receive() in between."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while (await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": str(get_session(scope).user_id)})


async def push_user(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Never receives after the handshake: sends the session's user every 20 ms."""
    await receive()
    await send({"type": "websocket.accept"})
    try:
        while True:
            await send({"type": "websocket.send", "text": str(get_session(scope).user_id)})
            await asyncio.sleep(0.02)
    except WebSocketClosed:
        scope["closed_under_the_handler"] = True


async def websocket_scope(cookie: str) -> dict[str, Any]:
    scope: dict[str, Any] = {}

    async def record(given: dict[str, Any], receive: Any, send: Any) -> None:
        scope.update(given)

    await run_websocket(record, cookie)
    return scope


class Socket:
    """One WebSocket connection to an ASGI app, driven message by message."""

    def __init__(self, app: Any, scope: dict[str, Any]) -> None:
        self.scope = scope
        self.incoming: asyncio.Queue[Message] = asyncio.Queue()
        self.outgoing: asyncio.Queue[Message] = asyncio.Queue()
        self.incoming.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.ensure_future(app(scope, self.incoming.get, self.outgoing.put))

    async def next(self) -> Message:
        return await asyncio.wait_for(self.outgoing.get(), BOUND)

    async def say(self, text: str) -> Message:
        self.incoming.put_nowait({"type": "websocket.receive", "text": text})
        return await self.next()

    async def until_closed(self) -> Message:
        """The close the server sent, past any messages sent before it."""

        async def skip_sends() -> Message:
            while (message := await self.outgoing.get())["type"] == "websocket.send":
                pass
            return message

        return await asyncio.wait_for(skip_sends(), BOUND)

    async def finish(self) -> None:
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.task, BOUND)


def worker(prefix: str, url: str = REDIS_URL, **settings: Any) -> SessionConfig:
    return sessions(secret_key=SECRET, redis_url=url, key_prefix=prefix, **settings)


async def log_in(config: SessionConfig) -> str:
    transport = httpx.ASGITransport(app=config(asgi_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get("/login?user=alice")
        return client.cookies["session"]


@pytest.fixture
async def opened(key_prefix: str) -> AsyncIterator[Any]:
    """open(app, **settings): a WebSocket of a logged-in alice to `app` behind a worker."""
    configs: list[SessionConfig] = []
    sockets: list[Socket] = []

    async def open_socket(app: Any, **settings: Any) -> Socket:
        config = worker(key_prefix, **settings)
        configs.append(config)
        if "local_cache" in settings:
            await ready(config)
        socket = Socket(config(app), await websocket_scope(await log_in(config)))
        sockets.append(socket)
        assert await socket.next() == {"type": "websocket.accept"}
        return socket

    yield open_socket
    for socket in sockets:
        socket.task.cancel()
    for config in configs:
        await config.aclose()


async def test_an_ended_session_closes_a_websocket_waiting_in_receive(  # type: ignore[no-untyped-def]
    opened, key_prefix
) -> None:
    socket = await opened(echo_user, websocket_recheck=0.2)
    assert (await socket.say("who"))["text"] == "alice"
    worker(key_prefix).invalidate_user("alice", delete=True)
    assert await socket.next() == ENDED  # the handler never sent or received meanwhile
    await asyncio.wait_for(socket.task, BOUND)  # and it was handed a disconnect


async def test_the_local_caches_invalidation_closes_it_at_once(  # type: ignore[no-untyped-def]
    opened, key_prefix
) -> None:
    socket = await opened(echo_user, websocket_recheck=3600, local_cache=100)
    assert (await socket.say("who"))["text"] == "alice"
    worker(key_prefix).invalidate_user("alice")  # another process: only the epoch changes
    assert await socket.next() == ENDED


async def test_a_handler_that_only_sends_is_stopped(opened, key_prefix) -> None:  # type: ignore[no-untyped-def]
    socket = await opened(push_user, websocket_recheck=0.2)
    assert (await socket.next())["text"] == "alice"
    worker(key_prefix).invalidate_user("alice")
    assert await socket.until_closed() == ENDED
    await asyncio.wait_for(socket.task, BOUND)
    assert socket.scope["closed_under_the_handler"]
    assert socket.outgoing.empty(), "nothing is sent after the close"


async def test_a_live_session_keeps_its_websocket(opened) -> None:  # type: ignore[no-untyped-def]
    socket = await opened(echo_user, websocket_recheck=0.05)
    for _ in range(6):
        await asyncio.sleep(0.05)
        assert await socket.say("who") == {"type": "websocket.send", "text": "alice"}
    await socket.finish()


async def test_a_session_that_cannot_be_verified_closes_with_1013(  # type: ignore[no-untyped-def]
    opened,
    server,  # noqa: F811
) -> None:
    socket = await opened(echo_user, url=server.url, websocket_recheck=0.2, redis_timeout=0.5)
    assert (await socket.say("who"))["text"] == "alice"
    server.kill()
    assert await socket.next() == {"type": "websocket.close", "code": 1013}
