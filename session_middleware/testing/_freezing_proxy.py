"""A loopback TCP proxy in front of Redis that can freeze traffic without closing anything."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

HOST = "127.0.0.1"
CHUNK = 65536
CONTROL_TIMEOUT = 10.0  # seconds a freeze, thaw, start or stop may take


class FreezingProxy:
    """A TCP proxy on a free loopback port, forwarding to Redis, that can hold every byte,
    both ways, while keeping every connection open.

    That is a silent partition, as a half-dead network, a stuck load balancer or a paused
    VM look to a Redis client: nothing is refused and nothing is closed, the replies just
    stop coming. Put it between your app and Redis to test that the app fails closed (a
    503 after ``redis_timeout``, never a session Redis did not confirm) and recovers.

    The proxy runs its own event loop in a thread, so it keeps forwarding, or holding,
    whatever the code under test does with its own loop. While frozen, new connections are
    accepted and held too; ``thaw()`` delivers what was held, in order.

    ``FreezingProxy.in_front_of(redis_url)`` builds one for a Redis URL; used as a context
    manager, it is started and stopped. ``url`` is the URL to give the app instead.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, db: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._path = f"/{db}"
        self._query = ""
        self._credentials = ""
        self._loop = asyncio.new_event_loop()
        self._thawed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @classmethod
    def in_front_of(cls, redis_url: str) -> FreezingProxy:
        """A proxy (not started) to the Redis of `redis_url`, a ``redis://`` URL; its
        ``url`` keeps that URL's database, credentials and options."""
        parts = urlsplit(redis_url)
        if parts.scheme != "redis":
            raise ValueError(f"a redis:// URL is needed, not {parts.scheme}://")
        proxy = cls(parts.hostname or "localhost", parts.port or 6379)
        proxy._path = parts.path or "/0"
        proxy._query = parts.query
        proxy._credentials = parts.netloc.rpartition("@")[0]
        return proxy

    @property
    def url(self) -> str:
        """The URL of Redis through the proxy (once started)."""
        login = f"{self._credentials}@" if self._credentials else ""
        return urlunsplit(("redis", f"{login}{HOST}:{self.port}", self._path, self._query, ""))

    def start(self) -> FreezingProxy:
        """Listen, and forward; returns the proxy."""
        self._thread.start()
        self._control(self._open)
        return self

    def freeze(self) -> None:
        """From now on nothing is forwarded, in either direction; nothing is closed."""
        self._control(self._set_frozen, True)

    def thaw(self) -> None:
        """Forward again, what was held first."""
        self._control(self._set_frozen, False)

    def stop(self) -> None:
        """Close every connection and the listener, and end the proxy's thread."""
        self._control(self._close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=CONTROL_TIMEOUT)
        self._loop.close()

    def __enter__(self) -> FreezingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _control(self, function: Callable[..., Awaitable[None]], *args: object) -> None:
        async def run() -> None:
            await function(*args)

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=CONTROL_TIMEOUT)

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

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
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
