"""A loopback TCP proxy that can freeze traffic in both directions without closing.

It runs its own event loop in a thread, so it keeps forwarding (or holding) bytes whatever
the code under test does with its own loop. While frozen, every connection stays open and
whatever arrives is held; `thaw()` delivers it, in order. A silent partition, as a
half-dead network, a stuck load balancer or a paused VM look to a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

HOST = "127.0.0.1"
CHUNK = 65536


class FreezingProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thawed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> FreezingProxy:
        self._thread.start()
        self._call(self._open)
        return self

    def freeze(self) -> None:
        """From now on nothing is forwarded, in either direction; nothing is closed."""
        self._call(self._set_frozen, True)

    def thaw(self) -> None:
        self._call(self._set_frozen, False)

    def stop(self) -> None:
        self._call(self._close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _call(self, function: Any, *args: Any) -> Any:
        async def run() -> Any:
            return await function(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    async def _set_frozen(self, frozen: bool) -> None:
        if frozen:
            self._thawed.clear()
        else:
            self._thawed.set()

    async def _open(self) -> None:
        self._thawed.set()
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        self._thawed.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()

    async def _serve(self, client_in: asyncio.StreamReader, client_out: Any) -> None:
        await self._thawed.wait()
        try:
            server_in, server_out = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_out.close()
            return
        self._writers.update((client_out, server_out))
        await asyncio.gather(self._pump(client_in, server_out), self._pump(server_in, client_out))

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(CHUNK):
                await self._thawed.wait()  # held here while frozen
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            self._writers.discard(sink)
            with contextlib.suppress(OSError):
                sink.close()
