"""An opt-in, in-process cache of session records and epochs, kept correct by Redis.

Redis server-assisted client-side caching (CLIENT TRACKING) in RESP2 form: every
connection of the pool turns tracking on with REDIRECT to one listener connection that
is subscribed to ``__redis__:invalidate``. Redis then sends the listener the name of every
key this process has read, as soon as anyone changes, deletes, expires or evicts it, and
the entry is dropped. A read is stored only if no invalidation for its keys arrived while
it was in flight, and only from a connection that tracks for the current listener. When the
listener connection drops, the whole cache is dropped and nothing is cached until a new
listener is subscribed and a new pool, tracking for it, has replaced the old one.

What is left is a short window: between `invalidate_user` returning on one worker and the
invalidation message reaching another worker's listener (measured in the benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis.exceptions import RedisError

from .commands import Command, run_async, text
from .scripts import READ

logger = logging.getLogger("session_middleware")

INVALIDATE_CHANNEL = "__redis__:invalidate"
RETIRED_POOL_GRACE_SECONDS = 5.0
RECONNECT_DELAY_SECONDS = 0.5


class TrackedCache:
    """A bounded LRU of key → value, emptied by Redis invalidation messages."""

    def __init__(self, url: str, options: dict[str, Any], max_entries: int) -> None:
        self.url = url
        self.options = options
        self.max_entries = max_entries
        self.entries: OrderedDict[str, Any] = OrderedDict()
        self.generation = 0  # bumped each time the listener (re)subscribes or drops
        self.healthy = False
        self.hits = 0
        self.listener_id: int | None = None
        self._reading: dict[str, list[int]] = {}  # key -> [readers in flight, invalidated]
        self._client: Any | None = None
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    # -- the cache ------------------------------------------------------------------

    def lookup(self, keys: Sequence[str]) -> list[Any] | None:
        """All values, if every key is cached and the cache is trustworthy now."""
        if not self.healthy:
            return None
        values = []
        for key in keys:
            value = self.entries.get(key)
            if value is None:
                return None
            self.entries.move_to_end(key)
            values.append(value)
        self.hits += 1
        return values

    def begin_read(self, keys: Sequence[str]) -> int:
        for key in keys:
            self._reading.setdefault(key, [0, 0])[0] += 1
        return self.generation

    def end_read(self, keys: Sequence[str], values: Sequence[Any], generation: int) -> None:
        fresh = self.healthy and generation == self.generation
        for key in keys:
            readers = self._reading[key]
            fresh = fresh and not readers[1]
            readers[0] -= 1
            if readers[0] == 0:
                del self._reading[key]
        if not fresh:
            return
        for key, value in zip(keys, values, strict=True):
            if value is not None:
                self.entries[key] = value
                self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def invalidate(self, keys: Sequence[str] | None) -> None:
        """Drop the keys (all of them for None, as Redis sends on FLUSHALL)."""
        if keys is None:
            self.entries.clear()
            for readers in self._reading.values():
                readers[1] = 1
            return
        for key in keys:
            self.entries.pop(key, None)
            reading = self._reading.get(key)
            if reading is not None:
                reading[1] = 1

    def drop_all(self) -> None:
        self.healthy = False
        self.generation += 1
        self.invalidate(None)

    # -- the connections ----------------------------------------------------------------

    async def client(self) -> Any:
        """The current tracking client, once a listener is subscribed for it."""
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen())
        if self._client is None:
            await self._ready.wait()
        assert self._client is not None
        return self._client

    async def _listen(self) -> None:
        while True:
            try:
                await self._subscribe_and_read()
            except (RedisError, OSError) as error:
                logger.warning(
                    "session cache listener lost (%s): cache dropped", type(error).__name__
                )
            self.drop_all()
            await asyncio.sleep(RECONNECT_DELAY_SECONDS)

    async def _subscribe_and_read(self) -> None:
        pool = redis.asyncio.ConnectionPool.from_url(self.url, **self.options, protocol=2)
        connection: Any = pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.connect()
            await connection.send_command("CLIENT", "ID")
            listener_id = int(await connection.read_response())
            await connection.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
            await connection.read_response()
            self._install_client(listener_id)
            while True:
                message = await connection.read_response(timeout=float("inf"))
                if (
                    isinstance(message, list)
                    and len(message) == 3
                    and text(message[0]) == "message"
                ):
                    payload = message[2]
                    keys = None if payload is None else [str(text(k)) for k in payload]
                    self.invalidate(keys)
        finally:
            with contextlib.suppress(Exception):
                await connection.disconnect()

    def _install_client(self, listener_id: int) -> None:
        """A new pool whose every connection tracks for `listener_id`; the old one retires."""
        self.listener_id = listener_id
        pool = redis.asyncio.ConnectionPool.from_url(
            self.url, connection_class=_tracking_connection(listener_id), **self.options, protocol=2
        )
        old, self._client = self._client, redis.asyncio.Redis(connection_pool=pool)
        if old is not None:
            asyncio.get_running_loop().call_later(
                RETIRED_POOL_GRACE_SECONDS, lambda: asyncio.ensure_future(old.aclose())
            )
        self.generation += 1
        self.healthy = True
        self._ready.set()

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._client is not None:
            await self._client.aclose()


def _tracking_connection(listener_id: int) -> type:
    class TrackingConnection(redis.asyncio.Connection):
        async def on_connect_check_health(self, check_health: bool = True) -> None:
            await super().on_connect_check_health(check_health)
            await self.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", listener_id, "NOLOOP")
            if text(await self.read_response()) != "OK":
                raise redis.ConnectionError("CLIENT TRACKING was refused")

    return TrackingConnection


class CachedRedis:
    """The subset of a redis.asyncio client the package uses, served from the cache."""

    def __init__(self, cache: TrackedCache) -> None:
        self.cache = cache

    async def aclose(self) -> None:
        await self.cache.aclose()

    async def execute_command(self, *args: Any) -> Any:
        (reply,) = await self.run([args])
        return reply

    async def run(self, commands: Sequence[Command]) -> list[Any]:
        cache = self.cache
        keys = _read_keys(commands)
        if keys is not None:
            cached = cache.lookup(keys)
            if cached is not None:
                return [_read_reply(cached, len(keys))]
            client = await cache.client()
            generation = cache.begin_read(keys)
            values: list[Any] = []
            try:
                # Redis does not track keys read inside a script: read them as commands.
                values = await run_async(client, [_TRACKED_READS[n](key) for n, key in
                                                  enumerate(keys)])  # fmt: skip
            finally:
                cache.end_read(keys, [v or None for v in values] or [None] * len(keys), generation)
            return [_read_reply(values, len(keys))]
        written = [key for command in commands for key in _written_keys(command)]
        cache.invalidate(written)
        try:
            return await self._write(commands)
        finally:
            # Tracking is NOLOOP: Redis does not tell a connection about its own writes.
            # A read of these keys that ran on the writing connection just before the
            # write may have been stored meanwhile: drop it now that the write is done.
            cache.invalidate(written)

    async def _write(self, commands: Sequence[Command]) -> list[Any]:
        return await run_async(await self.cache.client(), commands)


# The session read (scripts.READ) reads a record (a hash) and, if given, an epoch key.
_TRACKED_READS = (lambda key: ("HGETALL", key), lambda key: ("GET", key))


def _read_keys(commands: Sequence[Command]) -> list[str] | None:
    """The keys of the session read, when `commands` is one; else None."""
    if len(commands) != 1 or commands[0][:2] != ("EVAL", READ):
        return None
    command = commands[0]
    return [str(key) for key in command[3 : 3 + int(command[2])]]


def _read_reply(values: Sequence[Any], count: int) -> list[Any]:
    """The session read's reply from the values of its keys."""
    return [values[0] or [], values[1] if count > 1 else None]


def _written_keys(command: Command) -> list[str]:
    name = str(command[0]).upper()
    if name in ("EVAL", "EVALSHA"):
        count = int(command[2])
        return [str(k) for k in command[3 : 3 + count]]
    if name == "DEL":
        return [str(k) for k in command[1:]]
    return [str(command[1])] if len(command) > 1 else []


class CachingClients:
    """RedisClients whose async face reads through a TrackedCache (one per event loop)."""

    def __init__(self, inner: Any, url: str, options: dict[str, Any], max_entries: int) -> None:
        self.inner = inner
        self.url = url
        self._options = options
        self._max_entries = max_entries
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CachedRedis] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def can_sync(self) -> bool:
        return bool(self.inner.can_sync)

    @property
    def can_async(self) -> bool:
        return True

    def sync(self) -> Any:
        return self.inner.sync()

    async def aclose(self) -> None:
        """Close the cache and connections of the running event loop."""
        client = self._by_loop.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def async_(self) -> CachedRedis:
        loop = asyncio.get_running_loop()
        client = self._by_loop.get(loop)
        if client is None:
            cache = TrackedCache(self.url, self._options, self._max_entries)
            client = self._by_loop[loop] = CachedRedis(cache)
        return client
