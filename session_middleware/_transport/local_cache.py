"""An opt-in, in-process cache of session records and epochs, kept correct by Redis.

Redis server-assisted client-side caching (CLIENT TRACKING) in RESP2 form: the cache's
connection (the multiplexed connection, one per event loop, when `redis_multiplex` is on;
else every connection of a pool) turns tracking on with REDIRECT to one listener
connection that is subscribed to ``__redis__:invalidate``. Redis then sends the listener
the name of every key this process has read, as soon as anyone changes, deletes, expires
or evicts it, and the entry is dropped. A read is stored only if no invalidation for its
keys arrived while it was in flight, and only from a connection that tracks for the
current listener. A session's write is sent as WRITE_AND_TRACK, which reads the record's
key after writing it, in the same script: its own write untracks the key (unreported,
NOLOOP), the read tracks it again; once the reply says the write was applied, the cache
applies the same changes to its copy of the record, so the request after a write is served
from the cache and Redis reads nothing back. This process's writes on other connections
(an epoch bump that waits for a replica, a sync call run in a thread) are reported to the
listener only later: their keys' copies are dropped when they return, so that this
process's own change is seen here at once. What this process's own connection deletes
without naming the key is never reported either: the sessions a login's cap ends (dropped
by the names in the login's reply, and the whole cache when the reply never comes), and a
key that expired as this connection read it (a read that finds a key gone drops its copy).

An invalidation from the listener also voids the reads of its keys still in flight: they
may have read the value it replaces. This process's own write, answered on the multiplexed
connection, drops its keys' copies but lets such reads be kept: Redis runs one
connection's commands in the order sent and answers them in that order, so a read still
in flight when the write's reply arrives was sent after the write and saw it. On a pool
of connections, on a connection replaced since the write was sent, or when the reply never
came (a timeout, a cancelled request), the order is unknown, and the reads are voided
too. So requests writing one session at once keep its copy current instead of leaving it
uncached.

The listener runs in a thread of its own, on a sync connection, so a busy event loop does
not delay an invalidation. It proves it is alive: it sends a PING at least every
`ping_interval` seconds, and Redis answers it on the same connection after every
invalidation it had sent before. When the answer comes back, every write Redis finished
before the PING was sent has been applied here.
Just before each PING, a second connection asks Redis (CLIENT LIST ID) whether it still has
every connection of the tracking pool, since Redis stops reporting the keys read by a
connection it closed (`timeout`, CLIENT KILL); if one is gone, the cache is dropped, the
pool replaced, and that PING proves nothing; otherwise the proof is the time of that check.
A cached value is served only while the proof is younger than `max_lag` seconds
(`local_cache_max_lag`), whether or not the listener thread got to run meanwhile;
otherwise the whole cache is dropped and the read goes to Redis (a 503 when Redis cannot
be reached). A PING unanswered for `redis_timeout`, or a lost listener connection, drops
the cache and reconnects; until a new listener is subscribed and a new pool tracking for
it is installed, reads and writes go to Redis uncached, so a worker started while Redis is
down answers 503 within `redis_timeout` instead of waiting for the listener.

What is left is a window: after `invalidate_user` returns on one worker, another worker may
serve its copy until the invalidation message reaches its listener (about a millisecond),
and never for longer than `max_lag`, even when the network or Redis stalls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

import redis
import redis.asyncio
from redis.exceptions import RedisError

from .._protocol.lua_scripts import (
    READ,
    WRITE_AND_TRACK,
    WRITTEN,
    LoginCall,
    ReadCall,
    WriteCall,
)
from .._protocol.wire import Command, text
from .multiplexed import MultiplexedRedis
from .round_trip import run_async

logger = logging.getLogger("session_middleware")

INVALIDATE_CHANNEL = "__redis__:invalidate"
RETIRED_POOL_GRACE_SECONDS = 5.0
RECONNECT_DELAY_SECONDS = 0.5
PING_INTERVAL_SECONDS = 0.5  # at most; shorter when max_lag is under twice this
PING_DEADLINE_SECONDS = 2.0  # when redis_timeout is None
STOP_JOIN_SECONDS = 3.0

Watcher = Callable[[], None]


class TrackingClient(Protocol):
    """The tracking connection (MultiplexedRedis), or pool of them (_PooledRun)."""

    def run(
        self, commands: Sequence[Command], errors_as_replies: bool = False
    ) -> Awaitable[list[Any]]: ...

    async def execute_command(self, *args: Any, **options: Any) -> Any: ...

    async def aclose(self) -> None: ...


class ListenerStalled(RedisError):
    """The listener's PING got no answer within the deadline."""


def session_read(commands: Sequence[Command]) -> Sequence[str] | None:
    """The one place that knows what the core's session read looks like: HGETALL of the
    record, then GET of the epoch key (optional), in one pipeline
    (record_commands.Writes.read_pipelined); or one EVAL of lua_scripts.READ with KEYS =
    [record, epoch key (optional)], whose reply is [record fields, epoch]. Its keys, if
    `commands` is either.

    A miss sends the read script on the tracking connection, whichever way the read came:
    Redis tracks the keys a script declares as if the connection had read them itself
    (every declared key, read or not, on 6.2 and 7.0 alike), and what the cache keeps of a
    record and its epoch was read at one instant."""
    if not commands:
        return None
    first = commands[0]
    if first[0] == "HGETALL":
        if len(commands) == 1:
            return first[1:2]
        if len(commands) == 2 and commands[1][0] == "GET":
            return (first[1], commands[1][1])
        return None
    if len(commands) != 1 or first[0] != "EVAL" or first[1] != READ:
        return None
    keys: Sequence[str] = first[3 : 3 + int(first[2])]
    return keys


def atomic_read(commands: Sequence[Command], keys: Sequence[str]) -> Command:
    """The read script for the session read `commands` of `keys` (see session_read)."""
    if commands[0][0] == "EVAL":
        return commands[0]
    epoch_key = keys[1] if len(keys) > 1 else None
    return ReadCall(record=keys[0], epoch_key=epoch_key).command()


def as_replies(commands: Sequence[Command], reply: list[Any]) -> list[Any]:
    """The read script's reply as the replies of the session read `commands`: one per
    command of the pipeline, or the script's own."""
    if commands[0][0] == "EVAL":
        return [reply]
    return reply[: len(commands)]


def cached_values(reply: Any, count: int) -> list[Any]:
    """The read script's reply -> one value per key, as the cache keeps them: a record
    that is empty or of another type ('WRONGTYPE') and a missing epoch are not kept
    (None)."""
    record, epoch = reply
    values = [record if type(record) is list and record else None]
    if count > 1:
        values.append(epoch)
    return values


def cached_replies(commands: Sequence[Command], values: list[Any]) -> list[Any]:
    """A value for every key of the session read `commands` (a hit) -> its replies: the read
    script's, or one per command of the pipeline (HGETALL, GET: the values themselves)."""
    if commands[0][0] == "EVAL":
        return [[values[0], values[1] if len(values) > 1 else None]]
    return values


class TrackedCache:
    """A bounded LRU of key → value, emptied by Redis invalidation messages."""

    def __init__(
        self,
        url: str,
        options: dict[str, Any],
        max_entries: int,
        max_lag: float = 1.0,
        multiplexed: bool = False,
    ) -> None:
        self.url = url
        self.options = options
        self.multiplexed = multiplexed  # one tracking connection (MultiplexedRedis), not a pool
        self.max_entries = max_entries
        self.max_lag = max_lag
        self.ping_interval = min(PING_INTERVAL_SECONDS, max_lag / 2)
        self.deadline = float(options.get("socket_timeout") or PING_DEADLINE_SECONDS)
        self.entries: OrderedDict[str, Any] = OrderedDict()
        self.generation = 0  # bumped each time the listener (re)subscribes or drops
        self.healthy = False
        self.proven_at = float("-inf")  # monotonic send time of the last PING answered
        self.hits = 0
        self.distrusted = 0  # whole-cache drops because the proof was too old
        self.listener_id: int | None = None
        self._reading: dict[str, list[int]] = {}  # key -> [readers in flight, invalidated]
        self._watchers: dict[str, set[Watcher]] = {}
        self._lock = threading.Lock()  # the listener thread and the event loop share the above
        self._subscription = 0  # bumped by each drop: a late install of an old listener is void
        self._pool = 0  # bumped by each install: the number of the current tracking pool
        self._tracking: dict[int, int] = {}  # its open connections: id(connection) -> client id
        self._client: TrackingClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._listening: Any | None = None  # the listener thread's subscribed connection

    # -- the cache ------------------------------------------------------------------

    def lookup(self, keys: Sequence[str]) -> tuple[list[Any] | None, int]:
        """All values, if every key is cached and the cache is trustworthy now; else None,
        and the read from Redis is begun: the generation to hand to end_read."""
        with self._lock:
            if self.healthy:
                if time.monotonic() - self.proven_at < self.max_lag:
                    entries = self.entries
                    values = list(map(entries.get, keys))
                    if None not in values:
                        for key in keys:
                            entries.move_to_end(key)
                        self.hits += 1
                        return values, self.generation
                elif self.entries:  # in doubt: drop everything, read from Redis
                    self.distrusted += 1
                    self._forget(None)
            self._begin_reading(keys)
            return None, self.generation

    def begin_read(self, keys: Sequence[str]) -> int:
        """A read from Redis of `keys` begins, whatever the cache holds: the generation to
        hand to end_read or end_write."""
        with self._lock:
            self._begin_reading(keys)
            return self.generation

    def _begin_reading(self, keys: Sequence[str]) -> None:
        reading = self._reading
        for key in keys:
            readers = reading.get(key)
            if readers is None:
                reading[key] = [1, 0]
            else:
                readers[0] += 1

    def end_read(self, keys: Sequence[str], values: Sequence[Any], generation: int) -> None:
        """A read of `keys` (begun by lookup or begin_read) gave `values` (None: nothing to
        keep): they are kept if no invalidation came for their keys, and the cache was not
        dropped, while the read was in flight."""
        with self._lock:
            if not self._end_reading(keys, generation):
                return
            entries = self.entries
            for key, value in zip(keys, values, strict=True):
                if value is not None:
                    entries[key] = value
                    entries.move_to_end(key)
                else:  # gone: perhaps expired as this connection read it, unreported
                    entries.pop(key, None)
            self._bound()

    def end_write(
        self,
        keys: Sequence[str],
        written: Sequence[str],
        generation: int,
        answered: bool,
        change: Callable[[list[Any]], list[Any]] | None,
    ) -> None:
        """A session's write, sent at `generation` and begun by begin_read of its `keys`
        (the record, then the epoch key), is done (`answered`: its reply arrived), having
        changed `written`: those keys are dropped as by wrote. With `change`, the write was
        applied to the record, and the record Redis holds after it is change(the record
        before it), which is kept, in one step with the drop, when the record was cached
        and no invalidation of its keys came, nor was the cache dropped, while the write
        was in flight. Another write of it from here is applied to the copy in the order
        Redis ran them: on the multiplexed connection the replies come in that order, and
        on a pool the first to end voids the other (see wrote)."""
        with self._lock:
            fresh = self._end_reading(keys, generation)
            before = self.entries.get(keys[0]) if fresh else None
            self._forget(written, self._in_order(answered, generation))
            if before is not None and change is not None:
                self.entries[keys[0]] = change(before)
                self._bound()
            if not self._watchers:
                return
            watchers = self._watchers_of(written)
        for watcher in watchers:
            watcher()

    def _end_reading(self, keys: Sequence[str], generation: int) -> bool:
        """A read of `keys` in flight ends: whether what it read may be kept (no invalidation
        of its keys came, and the cache was not dropped)."""
        reading = self._reading
        fresh = self.healthy and generation == self.generation
        for key in keys:
            readers = reading[key]
            if readers[1]:
                fresh = False
            if readers[0] == 1:
                del reading[key]
            else:
                readers[0] -= 1
        return fresh

    def _bound(self) -> None:
        entries = self.entries
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    def invalidate(self, keys: Sequence[str] | None) -> None:
        """Drop the keys (all of them for None, as Redis sends on FLUSHALL), void the
        reads of them in flight, and tell the watchers of those keys that they changed."""
        self.wrote(keys, answered=False, generation=-1)

    def wrote(self, keys: Sequence[str] | None, answered: bool, generation: int) -> None:
        """This process's own write of `keys` (None: unknown, so all), sent at `generation`,
        is done; `answered`: its reply arrived. As invalidate, except that the reads in flight
        may still be kept when they were sent after it on the same connection (_in_order)."""
        with self._lock:
            self._forget(keys, self._in_order(answered, generation))
            watchers = self._watchers_of(keys)
        for watcher in watchers:
            watcher()

    def _in_order(self, answered: bool, generation: int) -> bool:
        """Whether every read in flight that may still be kept was sent after a write that
        was sent at `generation` and is done now (`answered`: its reply arrived). On the
        multiplexed connection, one connection for as long as the generation holds, it was
        (see the module's docstring)."""
        return answered and self.multiplexed and generation == self.generation

    def _watchers_of(self, keys: Sequence[str] | None) -> Collection[Watcher]:
        if not self._watchers:
            return ()
        if keys is None:
            return {w for found in self._watchers.values() for w in found}
        return {w for key in keys for w in self._watchers.get(key, ())}

    def _forget(self, keys: Sequence[str] | None, in_order: bool = False) -> None:
        """Drop the keys' copies, and void the reads of them in flight, unless they are
        known to have been sent after the change (`in_order`)."""
        if keys is None:
            self.entries.clear()
            for readers in self._reading.values():
                readers[1] = 1
            return
        entries, reading = self.entries, self._reading
        for key in keys:
            entries.pop(key, None)
            if not in_order:
                found = reading.get(key)
                if found is not None:
                    found[1] = 1

    def watch(self, keys: Sequence[str], watcher: Watcher) -> Callable[[], None]:
        """Call `watcher` (from any thread) whenever one of `keys` is invalidated; returns
        the function that stops watching."""
        with self._lock:
            for key in keys:
                self._watchers.setdefault(key, set()).add(watcher)

        def unwatch() -> None:
            with self._lock:
                for key in keys:
                    found = self._watchers.get(key)
                    if found is not None:
                        found.discard(watcher)
                        if not found:
                            del self._watchers[key]

        return unwatch

    def drop_all(self) -> None:
        with self._lock:
            self.healthy = False
            self.generation += 1
            self._subscription += 1
            self.proven_at = float("-inf")
            self._forget(None)

    def _connection_opened(self, pool: int, connection: object, client_id: int) -> None:
        with self._lock:
            if pool != self._pool:
                return
            if self.multiplexed and self._tracking:
                # The multiplexed client opens a connection only when the one before is
                # gone, and Redis stopped reporting the keys that one read.
                self.generation += 1
                self._forget(None)
                self._tracking = {}
            self._tracking[id(connection)] = client_id

    def _connection_lost(self, pool: int, connection: object) -> None:
        """A tracking connection closed: Redis no longer reports the keys it read."""
        with self._lock:
            if pool == self._pool:
                self._tracking.pop(id(connection), None)
                self.generation += 1
                self._forget(None)

    def _tracking_alive(self, side: Any, listener_id: int) -> bool:
        """Whether Redis still has every connection of the pool: it stops reporting the keys
        a connection read once it closed it (`timeout`, CLIENT KILL), which the pool only
        notices when it next uses that connection. If not, the cache is dropped and the pool
        replaced."""
        with self._lock:
            ids = set(self._tracking.values())
        if not ids:
            return True
        side.send_command("CLIENT", "LIST", "ID", *sorted(ids))
        listing = str(text(side.read_response()) or "")
        alive = {
            int(line[3:].split(" ", 1)[0]) for line in listing.splitlines() if line[:3] == "id="
        }
        if ids <= alive:
            return True
        logger.warning("session cache: Redis closed a tracking connection: cache dropped")
        with self._lock:
            self.generation += 1
            self._forget(None)
            self._tracking = {}
            subscription = self._subscription
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._install_client, listener_id, subscription)
        return False

    # -- the connections ----------------------------------------------------------------

    def client(self) -> TrackingClient | None:
        """The current tracking client, or None while no listener is subscribed for it
        (then read from Redis uncached: never wait for the listener)."""
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(
                target=self._listen, name="session-cache-listener", daemon=True
            )
            self._thread.start()
        return self._client if self.healthy else None

    def _listen(self) -> None:
        """The listener thread: subscribe, read, prove; reconnect after any failure."""
        while not self._stopping():
            try:
                self._subscribe_and_read()
            except (RedisError, OSError) as error:
                if not self._stopping():
                    logger.warning(
                        "session cache listener lost (%s): cache dropped", type(error).__name__
                    )
            except RuntimeError:  # the event loop closed under us
                self._stop.set()
            self.drop_all()
            self._stop.wait(RECONNECT_DELAY_SECONDS)

    def _stopping(self) -> bool:
        return self._stop.is_set() or self._loop is None or self._loop.is_closed()

    def _subscribe_and_read(self) -> None:
        options = {
            **self.options,
            "socket_timeout": self.deadline,
            "socket_connect_timeout": self.deadline,
        }
        pool = speaking_resp2(redis.ConnectionPool.from_url(self.url, **options))
        connection: Any = pool.make_connection()  # subscribed: the listener
        side: Any = pool.make_connection()  # checks that the tracking connections are alive
        try:
            connection.connect()
            self._listening = connection
            connection.send_command("CLIENT", "ID")
            listener_id = int(connection.read_response())
            connection.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
            connection.read_response()
            with self._lock:
                subscription = self._subscription
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._install_client, listener_id, subscription)
            self._read_and_prove(connection, side, listener_id)
        finally:
            self._listening = None
            for opened in (connection, side):
                with contextlib.suppress(Exception):
                    opened.disconnect()

    def _read_and_prove(self, connection: Any, side: Any, listener_id: int) -> None:
        # Per PING not answered yet: its send time, and the proof its answer gives (the
        # time the tracking connections were last seen alive, None if one was not).
        pings: deque[tuple[float, float | None]] = deque()
        next_ping = time.monotonic()
        while not self._stopping():
            now = time.monotonic()
            if now >= next_ping:
                proof = now if self._tracking_alive(side, listener_id) else None
                connection.send_command("PING")
                pings.append((time.monotonic(), proof))
                next_ping = now + self.ping_interval
            if pings and now - pings[0][0] > self.deadline:
                raise ListenerStalled("no answer to the listener's PING")
            wake = min(next_ping, pings[0][0] + self.deadline) if pings else next_ping
            if not connection.can_read(timeout=max(wake - now, 0.0)):
                continue
            message = connection.read_response()
            if not isinstance(message, list) or not message:
                continue
            kind = text(message[0])
            if kind == "message" and len(message) == 3:
                payload = message[2]
                self.invalidate(None if payload is None else [str(text(k)) for k in payload])
            elif kind == "pong" and pings:
                proof = pings.popleft()[1]
                if proof is not None:
                    self.proven_at = proof

    def _wake_listener(self) -> None:
        """End the listener thread's wait for a message, so that it sees the stop now: its
        connection reads the end of the stream."""
        sock = getattr(self._listening, "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _install_client(self, listener_id: int, subscription: int) -> None:
        """A new pool whose every connection tracks for `listener_id`; the old one retires."""
        with self._lock:
            if subscription != self._subscription:
                return  # that listener was lost before this ran
        with self._lock:
            self._pool += 1
            self._tracking = {}
            connection_class = _tracking_connection(
                listener_id, self._pool, self._connection_opened, self._connection_lost
            )
        pool = speaking_resp2(
            redis.asyncio.ConnectionPool.from_url(
                self.url, connection_class=connection_class, **self.options
            )
        )
        client: TrackingClient
        if self.multiplexed:
            timeout = self.options.get("socket_timeout")
            client = MultiplexedRedis(pool.make_connection, timeout=timeout)
        else:
            client = _PooledRun(redis.asyncio.Redis.from_pool(pool))
        with self._lock:
            if subscription != self._subscription:
                return
            old, self._client = self._client, client
            self.listener_id = listener_id
            self.generation += 1
            self.healthy = True
        if old is not None:
            asyncio.get_running_loop().call_later(
                RETIRED_POOL_GRACE_SECONDS, lambda: asyncio.ensure_future(old.aclose())
            )

    async def aclose(self) -> None:
        self._stop.set()
        self._wake_listener()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, STOP_JOIN_SECONDS)
        self.drop_all()
        if self._client is not None:
            await self._client.aclose()


Pool = TypeVar("Pool", redis.ConnectionPool, redis.asyncio.ConnectionPool)


def speaking_resp2(pool: Pool) -> Pool:
    """`pool`, whose connections speak RESP2 even when the URL asks for ``protocol=3``
    (from_url lets the URL's options win over its keywords): Redis sends invalidations to
    the listener as messages of ``__redis__:invalidate``, and answers its PING with a
    ``pong`` message, only in RESP2; in RESP3 both are other shapes, and the cache would
    never be trusted."""
    pool.connection_kwargs["protocol"] = 2
    return pool


def _tracking_connection(
    listener_id: int,
    pool: int,
    opened: Callable[[int, object, int], None],
    lost: Callable[[int, object], None],
) -> type:
    class TrackingConnection(redis.asyncio.Connection):
        """A pooled connection whose reads Redis tracks: invalidations of the keys it
        reads go to the listener's connection."""

        async def on_connect_check_health(self, check_health: bool = True) -> None:
            await super().on_connect_check_health(check_health)
            await self.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", listener_id, "NOLOOP")
            if text(await self.read_response()) != "OK":
                raise redis.ConnectionError("CLIENT TRACKING was refused")
            await self.send_command("CLIENT", "ID")
            opened(pool, self, int(await self.read_response()))

        async def disconnect(self, *args: Any, **kwargs: Any) -> None:
            if self.is_connected:
                lost(pool, self)
            await super().disconnect(*args, **kwargs)

    return TrackingConnection


class CachedRedis:
    """The subset of a redis.asyncio client the package uses, served from the cache."""

    def __init__(self, cache: TrackedCache, uncached: Any) -> None:
        self.cache = cache
        self._uncached = uncached  # RedisClients: used while no listener is subscribed

    async def aclose(self) -> None:
        await self.cache.aclose()
        await self._uncached.aclose()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        (reply,) = await self.run([args])
        return reply

    def run(
        self, commands: Sequence[Command], errors_as_replies: bool = False
    ) -> Awaitable[list[Any]]:
        keys = session_read(commands)
        if keys is not None:
            return self._read(keys, commands, errors_as_replies)
        if len(commands) == 1:
            keys = WriteCall.session_keys(commands[0])
            # Without an epoch key (an anonymous session's write, or no epoch copy in
            # Redis) the read after it could not be served from here: an anonymous
            # session's read names an epoch key that never holds one, and only a value is
            # kept. Such a write is sent alone.
            if keys is not None and len(keys) == 2:
                return self._write_and_track(commands[0], keys, errors_as_replies)
        return self._write(commands, errors_as_replies)

    async def _read(
        self, keys: Sequence[str], commands: Sequence[Command], errors_as_replies: bool
    ) -> list[Any]:
        cache = self.cache
        cached, generation = cache.lookup(keys)
        if cached is not None:
            return cached_replies(commands, cached)
        values: list[Any] = [None] * len(keys)
        try:
            client = cache.client()
            if client is None:
                return await run_async(self._uncached.async_(), commands, errors_as_replies)
            (reply,) = await client.run([atomic_read(commands, keys)])
            values = cached_values(reply, len(keys))
            return as_replies(commands, reply)
        finally:
            cache.end_read(keys, values, generation)

    def blocking(self) -> BlockingRun:
        """The uncached clients' client for commands that hold their connection (WAIT),
        whose writes drop the copies of their keys here as this cache's own writes do."""
        return BlockingRun(self, _PooledRun(self._uncached.async_blocking()))

    async def _write(
        self,
        commands: Sequence[Command],
        errors_as_replies: bool,
        blocking: TrackingClient | None = None,
    ) -> list[Any]:
        """The writes `commands`, on the tracking connection, or on `blocking` (or on the
        uncached clients while no listener is subscribed): a connection of another pool,
        which Redis does not answer in any order with the tracking connection's reads, and
        whose writes it reports to the listener only later, if at all (this process's own
        change must be seen here when its call returns)."""
        cache = self.cache
        client = cache.client() if blocking is None else blocking
        tracking = client is not None and blocking is None
        if client is None:  # no listener subscribed: uncached, on a connection that does not
            client = _PooledRun(self._uncached.async_())  # track; a read may come after it
        if len(commands) == 1:
            written = _written_keys(commands[0])
        else:
            written = [key for command in commands for key in _written_keys(command)]
        capped = _capped_logins(commands)
        replies: list[Any] | None = None
        generation = cache.generation
        try:
            replies = await client.run(commands, errors_as_replies)
            return replies
        finally:
            # Tracking is NOLOOP: Redis does not tell a connection about its own writes.
            # Drop the keys now that the write is done, with any read of them still in
            # flight, which may have read them before the write, and tell the watchers of
            # these keys (now, not before: what they read before the write was applied is
            # already stale). Until then a read may still be served what the write
            # replaces: the write is not done yet.
            answered = replies is not None and tracking
            if capped:
                ended = _ended_by_caps(capped, replies)
                cache.wrote(None if ended is None else [*written, *ended], answered, generation)
            else:
                cache.wrote(written, answered, generation)

    async def _write_and_track(
        self, command: Command, keys: Sequence[str], errors_as_replies: bool
    ) -> list[Any]:
        """A session's write (WRITE) sent as WRITE_AND_TRACK: the write, then, when it wrote
        the record, a read of its key in the same script, which tracks it again (a
        connection's own write untracks it, with NOLOOP unreported). Once the reply says
        WRITTEN, the cache applies the write's changes to its copy of the record (see
        end_write), so the request after a write (which drops what the cache held of the
        record) finds the record here instead of missing and reading it from Redis, and
        Redis does not read the record back. The epoch's copy stays when the write was
        applied (the epoch was as the request expected, and a write does not change it);
        any other outcome may mean the epoch moved, and it is dropped. The reply is
        WRITE's."""
        cache = self.cache
        client = cache.client()
        if client is None:
            return await self._write([command], errors_as_replies)
        change = None
        generation = cache.begin_read(keys)
        answered = False
        try:
            (reply,) = await client.run([("EVAL", WRITE_AND_TRACK, *command[2:])], True)
            answered = True
            if type(reply) is list and len(reply) == 2:  # else an error
                reply, tracked = reply
                if reply == WRITTEN and tracked == 1:
                    change = partial(_written_record, command)
        finally:
            written = _written_keys(command)
            if change is not None:  # it found the epoch as expected, and left it so
                written = [key for key in written if key != keys[1]]
            cache.end_write(keys, written, generation, answered, change)
        if isinstance(reply, Exception) and not errors_as_replies:
            raise reply
        return [reply]


def _written_record(command: Command, record: list[Any]) -> list[Any]:
    """`record` as HGETALL gives it (field, value, ...) once the WRITE `command` wrote it:
    its field/value pairs set, then its deleted fields deleted, then its stamp, unless '',
    set as the field 'e'. A field set keeps its place, and a new one goes last, as in a
    small hash (a large one's order is Redis's own; the order does not change what a
    record decodes to)."""
    pairs, deleted, stamp = WriteCall.changes(command)
    raw = type(record[0]) is bytes  # as hiredis gives them, unless asked to decode
    updated = list(record)
    names = updated[::2]
    _set(updated, names, pairs, raw)
    if deleted:
        gone = {name.encode() for name in deleted} if raw else set(deleted)
        kept = [place for place, name in enumerate(names) if name not in gone]
        updated = [item for place in kept for item in updated[2 * place : 2 * place + 2]]
        names = updated[::2]
    if stamp:
        _set(updated, names, ("e", stamp), raw)
    return updated


def _set(updated: list[Any], names: list[Any], pairs: Sequence[str], raw: bool) -> None:
    for i in range(0, len(pairs), 2):
        name: Any = pairs[i]
        value: Any = pairs[i + 1]
        if raw:
            name, value = name.encode(), value.encode()
        try:
            place = names.index(name)
        except ValueError:
            names.append(name)
            updated += (name, value)
        else:
            updated[2 * place + 1] = value


def _capped_logins(commands: Sequence[Command]) -> list[tuple[int, str]]:
    """Where `commands` hold a login with a cap, and its record key base (see
    LoginCall.capped_key_base)."""
    found = []
    for index, command in enumerate(commands):
        base = LoginCall.capped_key_base(command)
        if base is not None:
            found.append((index, base))
    return found


def _ended_by_caps(capped: list[tuple[int, str]], replies: list[Any] | None) -> list[str] | None:
    """The records that logins with a cap deleted (keys they do not declare, which Redis
    does not report to the connection that deleted them), from their replies; None when a
    reply is missing (the request cancelled, or timed out, on its way) or an error: what
    the login deleted is unknown, and everything must go."""
    if replies is None:
        return None
    ended: list[str] = []
    for index, base in capped:
        if isinstance(replies[index], Exception):
            return None
        logged_in = LoginCall.reply(replies[index])
        if logged_in is not None:
            ended += [base + handle for handle in logged_in.ended]
    return ended


def _written_keys(command: Command) -> Sequence[str]:
    name = command[0]
    if name != "EVAL" and name != "EVALSHA":
        name = str(name).upper()
    if name in ("EVAL", "EVALSHA"):
        keys: Sequence[str] = command[3 : 3 + int(command[2])]
        return keys
    if name == "DEL":
        return [str(k) for k in command[1:]]
    return [str(command[1])] if len(command) > 1 else []


class BlockingRun:
    """CachedRedis.blocking: the runner's `run(commands)` on another pool's client."""

    def __init__(self, cached: CachedRedis, client: _PooledRun) -> None:
        self._cached = cached
        self.client = client

    def run(
        self, commands: Sequence[Command], errors_as_replies: bool = False
    ) -> Awaitable[list[Any]]:
        return self._cached._write(commands, errors_as_replies, self.client)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        (reply,) = await self.run([args])
        return reply


class _PooledRun:
    """A redis.asyncio client (a pool of tracking connections) with the multiplexed
    connection's `run(commands)`."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def run(
        self, commands: Sequence[Command], errors_as_replies: bool = False
    ) -> Awaitable[list[Any]]:
        return run_async(self.client, commands, errors_as_replies)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await self.client.execute_command(*args, **options)

    async def aclose(self) -> None:
        await self.client.aclose()


class CachingClients:
    """RedisClients whose async face reads through a TrackedCache (one per event loop)."""

    def __init__(
        self,
        inner: Any,
        url: str,
        options: dict[str, Any],
        max_entries: int,
        max_lag: float = 1.0,
    ) -> None:
        self.inner = inner
        self.url = url
        self._options = options
        self._max_entries = max_entries
        self._max_lag = max_lag
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CachedRedis] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()  # sync_wrote reads _by_loop from another thread
        # The last loop's client, found again without a lookup (its cache holds that loop
        # from its first read on: this keeps it hardly longer).
        self._current: tuple[asyncio.AbstractEventLoop, CachedRedis] | None = None

    @property
    def can_sync(self) -> bool:
        return bool(self.inner.can_sync)

    @property
    def topology(self) -> Any:
        return self.inner.topology

    @property
    def can_async(self) -> bool:
        return True

    def sync(self) -> Any:
        return self.inner.sync()

    def sync_wrote(self, commands: Sequence[Command]) -> None:
        """`commands` ran on the sync client (a sync view's call, run in a thread), outside
        every event loop's cache, and Redis reports their writes to the loops' listeners
        only later: each cache drops the copies of the keys they name now, so that this
        process's own change (an epoch bump) is seen here when the call returns."""
        if session_read(commands) is not None:  # a session's read: nothing written
            return
        keys = [key for command in commands for key in _written_keys(command)]
        with self._lock:  # the event loops add their clients meanwhile
            clients = list(self._by_loop.values())
        for client in clients:
            client.cache.invalidate(keys)

    def async_blocking(self) -> Any:
        return self.async_().blocking()

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        """Close the cache and connections of the running event loop."""
        loop = asyncio.get_running_loop()
        if self._current is not None and self._current[0] is loop:
            self._current = None
        with self._lock:
            client = self._by_loop.pop(loop, None)
        if client is not None:
            await client.cache.aclose()
        await self.inner.aclose()

    def async_(self) -> CachedRedis:
        loop = asyncio.get_running_loop()
        current = self._current
        if current is not None and current[0] is loop:
            return current[1]
        client = self._by_loop.get(loop)
        if client is None:
            cache = TrackedCache(
                self.url,
                self._options,
                self._max_entries,
                self._max_lag,
                multiplexed=bool(getattr(self.inner, "multiplexed", False)),
            )
            client = CachedRedis(cache, self.inner)
            with self._lock:
                self._by_loop[loop] = client
        self._current = (loop, client)
        return client
