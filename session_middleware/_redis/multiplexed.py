"""One multiplexed connection per event loop for the middleware's own async commands.

Every request of the loop shares one connection: the commands issued during one turn of
the loop are written together, and Redis's replies, parsed by hiredis, are matched to
their callers in FIFO order. A redis-py connection does the handshake (TLS, a unix socket,
AUTH with an ACL user, SELECT, Sentinel's master discovery), then its transport is handed
to `_Wire`, an asyncio.Protocol with no per-command coroutine, lock or timer.

Failures: a command unanswered `timeout` seconds after it was issued resets the connection
and fails every command still waiting with a TimeoutError; a lost connection fails them
with a ConnectionError (both the fail-closed 503). The next command connects again; after
a failed attempt the next one waits a backoff that doubles up to MAX_BACKOFF (and half the
timeout); commands issued meanwhile wait for it, or fail at once if it comes after their
deadline. A caller cancelled while its command is on the wire leaves
its place in the FIFO, and its reply is read and dropped. At most MAX_IN_FLIGHT commands
wait for replies; more wait for room, at most until their deadline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
from redis._parsers.base import BaseParser
from redis._parsers.response_callbacks import get_response_callbacks
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .round_trip import Command, by_sha, raised

MAX_IN_FLIGHT = 1024  # commands written and not answered yet, per connection
FIRST_BACKOFF = 0.05  # seconds before the next connection attempt after a failed one
MAX_BACKOFF = 1.0  # and at most half of the timeout, so that a caller can wait for it

# What redis-py's client makes of a command's raw reply (SET -> True, PEXPIRE -> bool...),
# so that both clients hand the core the same values.
_CALLBACKS: dict[Any, Any] = {
    name.upper(): call for name, call in get_response_callbacks(2, True).items()
}
_CALLBACKS.update(EVAL=None, EVALSHA=None)  # the hot path's commands: found at once
_UNKNOWN = object()

Connector = Callable[[], Any]  # makes an unconnected redis.asyncio Connection

_forks = 0  # bumped in a forked child: the parent's connections are not the child's


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


class _Batch:
    """The commands of one caller, and the replies come so far."""

    __slots__ = ("commands", "deadline", "future", "replies")

    def __init__(
        self, future: asyncio.Future[list[Any]], commands: Sequence[Command], deadline: float
    ) -> None:
        self.future = future
        self.commands = commands
        self.deadline = deadline
        self.replies: list[Any] = []


class _Wire(asyncio.Protocol):
    """One open connection: writes coalesced per loop turn, replies matched in order."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: Any,
        timeout: float | None,
        encoding: str | None,
    ) -> None:
        options: dict[str, Any] = {
            "protocolError": InvalidResponse,
            "replyError": BaseParser.parse_error,
        }
        if encoding is not None:
            options["encoding"] = encoding
        self._reader = hiredis.Reader(**options)
        self._loop = loop
        self._transport = transport
        self._timeout = timeout
        self._pending: collections.deque[_Batch] = collections.deque()
        self.in_flight = 0
        self._out: list[bytes] = []
        self._watchdog: asyncio.TimerHandle | None = None
        self._room: collections.deque[asyncio.Future[None]] = collections.deque()
        self.lost: Exception | None = None
        self.streams: tuple[Any, Any] | None = None

    # -- sending ------------------------------------------------------------------------

    def has_room(self, count: int) -> bool:
        return self.in_flight == 0 or self.in_flight + count <= MAX_IN_FLIGHT

    def send(self, commands: Sequence[Command]) -> asyncio.Future[list[Any]]:
        if self.lost is not None:
            raise self.lost
        # Packed first: an argument hiredis refuses raises here, before the FIFO holds it.
        packed = [hiredis.pack_command(command) for command in commands]
        loop = self._loop
        future: asyncio.Future[list[Any]] = loop.create_future()
        timeout = self._timeout
        deadline = float("inf") if timeout is None else loop.time() + timeout
        idle = not self._pending
        self._pending.append(_Batch(future, commands, deadline))
        self.in_flight += len(commands)
        out = self._out
        if idle and not out:  # no reply awaited, nothing buffered: write at once
            self._transport.write(b"".join(packed))
        else:  # written with the rest of this loop turn's commands
            if not out:
                loop.call_soon(self._flush)
            out.extend(packed)
        if self._watchdog is None and timeout is not None:
            self._watchdog = loop.call_at(deadline, self._check_deadline)
        return future

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.lost is None and out:
            self._transport.write(b"".join(out))

    def _check_deadline(self) -> None:
        self._watchdog = None
        if not self._pending or self.lost is not None:
            return
        head = self._pending[0].deadline
        if self._loop.time() >= head:
            self.fail(RedisTimeoutError(f"no reply from Redis within {self._timeout} s"))
        else:
            self._watchdog = self._loop.call_at(head, self._check_deadline)

    async def wait_for_room(self, count: int, deadline: float) -> None:
        """Wait until `count` more commands may be written, at most until `deadline`."""
        while self.lost is None and not self.has_room(count):
            left = deadline - self._loop.time()
            if left <= 0:
                raise RedisConnectionError(
                    f"{MAX_IN_FLIGHT} commands stayed unanswered on the Redis connection"
                )
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._room.append(waiter)
            try:
                await asyncio.wait((waiter,), timeout=left)
            finally:
                if not waiter.done():
                    waiter.cancel()
                    with contextlib.suppress(ValueError):
                        self._room.remove(waiter)
        if self.lost is not None:
            raise self.lost

    # -- receiving ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        pending = self._pending
        demoted = False
        try:
            while True:
                reply = reader.gets()
                if reply is False:
                    break
                batch = pending[0]
                replies = batch.replies
                replies.append(reply)
                if len(replies) == len(batch.commands):
                    pending.popleft()
                    self.in_flight -= len(replies)
                    demoted = _as_redis_py_gives(batch.commands, replies) or demoted
                    if not batch.future.done():  # else its caller was cancelled
                        batch.future.set_result(replies)
        except (InvalidResponse, IndexError) as error:  # garbage, or a reply nobody asked for
            self.fail(RedisConnectionError(f"Redis protocol error: {error!r}"))
            return
        if demoted:  # a master that became a replica: connect again, asking Sentinel
            self.fail(RedisConnectionError("the Redis master became a replica"))
            return
        room = MAX_IN_FLIGHT - self.in_flight
        while self._room and room > 0:
            waiter = self._room.popleft()
            if not waiter.done():
                waiter.set_result(None)
                room -= 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"connection to Redis lost: {exc!r}"))

    def fail(self, error: Exception) -> None:
        """Close the connection; every caller still waiting gets `error`."""
        if self.lost is not None:
            return
        self.lost = error
        self._transport.abort()
        if self._watchdog is not None:
            self._watchdog.cancel()
        pending, self._pending = self._pending, collections.deque()
        for batch in pending:
            if not batch.future.done():  # an exception each: tracebacks must not pile up
                batch.future.set_exception(type(error)(*error.args))
        for waiter in self._room:
            if not waiter.done():
                waiter.set_result(None)


def _as_redis_py_gives(commands: Sequence[Command], replies: list[Any]) -> bool:
    """Turn raw replies into what redis-py's client returns (SET -> True, PEXPIRE -> a
    bool...), in place; True if one was a ReadOnlyError."""
    demoted = False
    for index, reply in enumerate(replies):
        if isinstance(reply, Exception):
            demoted = demoted or isinstance(reply, ReadOnlyError)
            continue
        name = commands[index][0]
        callback = _CALLBACKS.get(name, _UNKNOWN)
        if callback is _UNKNOWN:
            callback = _CALLBACKS.get(str(name).upper())
        if callback is not None:
            replies[index] = callback(reply)
    return demoted


class MultiplexedRedis:
    """The middleware's async commands on one shared connection per event loop.

    `connector` makes an unconnected redis.asyncio Connection (a Sentinel-managed one
    connects to the master and checks its ROLE, see sentinel_follow); for Sentinel,
    `master_moved` is called the moment the master moves.
    """

    def __init__(
        self,
        connector: Connector,
        *,
        timeout: float | None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._on_close = on_close
        self._connector = connector
        self._timeout = timeout
        self._wire: _Wire | None = None
        self._address: tuple[str, int] | None = None
        self._master: tuple[str, int] | None = None  # where Sentinel last said it is
        self._connecting: asyncio.Future[_Wire] | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._forks = _forks
        self._backoff = 0.0
        self._retry_at = 0.0
        self._closed = False
        self.connections_opened = 0

    @property
    def in_flight(self) -> int:
        """Commands written on the current connection and not answered yet."""
        return 0 if self._wire is None else self._wire.in_flight

    async def run(self, commands: Sequence[Command]) -> list[Any]:
        """Run the commands in one round trip (EVAL by its SHA, NOSCRIPT sent again as
        EVAL) and return their replies, raising the first error among them."""
        if not commands:
            return []
        replies = await self._send([by_sha(command) for command in commands])
        for index, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):
                (replies[index],) = await self._send([commands[index]])
        return raised(replies)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """One command; `options` (redis-py's per-command keywords) are not used."""
        (reply,) = await self.run([args])
        return reply

    def _send(self, commands: Sequence[Command]) -> Awaitable[list[Any]]:
        """The replies, once they came: on an open connection with room, the future the
        wire answers, with no coroutine of its own."""
        wire = self._wire
        if (
            wire is None
            or wire.lost is not None
            or self._forks != _forks
            or not wire.has_room(len(commands))
        ):
            return self._send_when_ready(commands)
        return wire.send(commands)

    async def _send_when_ready(self, commands: Sequence[Command]) -> list[Any]:
        wire = self._wire
        if wire is None or wire.lost is not None or self._forks != _forks:
            wire = await self._connected()
        if not wire.has_room(len(commands)):
            await wire.wait_for_room(len(commands), self._deadline())
        return await wire.send(commands)

    def _deadline(self) -> float:
        now = asyncio.get_running_loop().time()
        return float("inf") if self._timeout is None else now + self._timeout

    async def _connected(self) -> _Wire:
        """The open connection, opened now if need be. After a failed attempt the next one
        waits for the backoff; a caller waits for it too if it comes before the caller's
        deadline, and fails at once otherwise."""
        while True:
            if self._closed:
                raise RedisConnectionError("the Redis connection was closed")
            if self._forks != _forks:  # the parent's connection: leave it to the parent
                self._wire, self._forks = None, _forks
            wire = self._wire
            if wire is not None and wire.lost is None:
                return wire
            loop = asyncio.get_running_loop()
            if self._connecting is None:
                wait = self._retry_at - loop.time()
                if wait > 0:
                    if self._timeout is not None and wait >= self._timeout:
                        raise RedisConnectionError(
                            "Redis unreachable; reconnecting after a backoff"
                        )
                    await asyncio.sleep(wait)
                    continue
                self._connecting = loop.create_future()
                self._connect_task = loop.create_task(self._connect(self._connecting))
            # shield: a cancelled caller must not cancel the attempt the others wait for.
            return await asyncio.shield(self._connecting)

    async def _connect(self, done: asyncio.Future[_Wire]) -> None:
        loop = asyncio.get_running_loop()
        connection = self._connector()
        try:
            await asyncio.wait_for(connection.connect(), self._timeout)
            transport = connection._writer.transport
            encoder = connection.encoder
            encoding = encoder.encoding if encoder.decode_responses else None
            wire = _Wire(loop, transport, self._timeout, encoding)
            transport.set_protocol(wire)
            # The transport is the wire's now: redis-py's connection must not close it
            # when it is collected, and its stream writer, which closes it when
            # collected, lives as long as the wire.
            wire.streams = (connection._reader, connection._writer)
            connection._writer = connection._reader = None
        except BaseException as error:
            with contextlib.suppress(Exception):
                await connection.disconnect()
            longest = MAX_BACKOFF if self._timeout is None else min(MAX_BACKOFF, self._timeout / 2)
            self._backoff = min(longest, max(FIRST_BACKOFF, self._backoff * 2))
            self._retry_at = loop.time() + self._backoff
            self._connecting = None
            if isinstance(error, (asyncio.TimeoutError, RedisTimeoutError)):
                error = RedisConnectionError(f"connecting to Redis timed out: {error!r}")
            elif not isinstance(error, Exception):
                done.cancel()
                raise
            done.set_exception(error)
            done.exception()  # retrieved here: no caller may be left to await it
            return
        self._backoff = 0.0
        self.connections_opened += 1
        self._address = (str(getattr(connection, "host", "")), int(getattr(connection, "port", 0)))
        self._wire = wire
        self._connecting = None
        done.set_result(wire)
        if self._master is not None:
            self.master_moved(self._master)  # heard of while connecting

    def master_moved(self, address: tuple[str, int] | None) -> None:
        """Sentinel named another master (None: a failover started): the connection to
        the old one (which may stay up, and writable, until Sentinel reconfigures it)
        fails now, its commands too."""
        self._master = address
        if address is not None:  # a master to connect to: no backoff from the failover
            self._backoff, self._retry_at = 0.0, 0.0
        wire = self._wire
        if wire is not None and address != self._address:
            wire.fail(RedisConnectionError("Sentinel moved the Redis master"))

    async def aclose(self) -> None:
        self._closed = True
        if self._wire is not None:
            self._wire.fail(RedisConnectionError("the Redis connection was closed"))
            self._wire = None
        if self._on_close is not None:
            await self._on_close()
