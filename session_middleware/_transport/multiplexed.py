"""One multiplexed connection per event loop for the middleware's own async commands.

Every request of the loop shares one connection: the commands issued during one turn of
the loop are written together, and Redis's replies, parsed by hiredis, are matched to
their callers in FIFO order. A redis-py connection does the handshake (TLS, a unix socket,
AUTH with an ACL user, SELECT, Sentinel's master discovery), then its transport is handed
to `_Wire`, an asyncio.Protocol with no per-command coroutine, lock or timer.

The connection speaks RESP2, whatever the URL or redis-py's default asks for (redis-py 8
says HELLO 3 unless told otherwise): the replies are turned into what redis-py's client
gives with RESP2's converters, and RESP3's push messages, which answer no command, have no
place in a FIFO of replies.

Failures (each the fail-closed 503 of its own caller):

- Deadlines are judged on what Redis said, not on how late the event loop is: when a
  command's `timeout` has passed since it was written, the watchdog first lets the loop
  read the socket once more, and keeps waiting while replies are still coming in (a burst
  the loop is working through). Only when a read finds nothing does a command past its
  deadline fail, alone, with a TimeoutError; its reply, if it ever comes, is read and
  dropped. The connection is reset only when Redis has said nothing at all for `timeout`
  while commands wait.
- A lost connection fails what waits on it with a ConnectionError. A command never written
  to the socket, and the read script, which changes nothing, are sent again once on a new
  connection; a write that may have been applied stays failed.
- The next command connects again; after a failed attempt, a command arriving within
  RECONNECT_FLOOR of it waits for the floor's end and tries again (fails at once if its
  deadline comes first).
- At most MAX_IN_FLIGHT commands wait for replies; a caller that would go past it is
  refused at once (admission control), so a burst degrades instead of collapsing.

A caller cancelled while its command is on the wire leaves its place in the FIFO, and
its reply is read and dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
from redis._parsers.base import BaseParser
from redis._parsers.response_callbacks import get_response_callbacks
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._protocol.lua_scripts import READ
from .._protocol.wire import Command
from .round_trip import by_sha, raised

# Commands issued and not answered yet, per connection: 16,384 session reads (two each).
MAX_IN_FLIGHT = 32_768
RECONNECT_FLOOR = 0.05  # seconds between connection attempts, at least
POLL_GRACE = 0.001  # a deadline is judged after the loop has read the socket once more

PROTOCOL = 2  # the RESP version the connection speaks, whatever its URL says
# What redis-py's client makes of a command's raw reply (SET -> True, PEXPIRE -> bool...),
# so that both clients hand the core the same values: RESP2's converters, for RESP2 replies.
_CALLBACKS: dict[Any, Any] = {
    name.upper(): call for name, call in get_response_callbacks(PROTOCOL, True).items()
}
_CALLBACKS.update(EVAL=None, EVALSHA=None, GET=None)  # the hot path's: found at once
# The session read's record as it comes, a flat list (records.flat_fields reads it, and
# redis-py's dict too), not turned into a dict on the hot path.
_CALLBACKS.update(HGETALL=None)
_UNKNOWN = object()
# Commands that change nothing: sent again on a new connection when theirs dies.
_READ_ONLY = frozenset(("GET", "MGET", "HGETALL", "EXISTS", "PING"))

Connector = Callable[[], Any]  # makes an unconnected redis.asyncio Connection

_forks = 0  # bumped in a forked child: the parent's connections are not the child's


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


class Dropped(RedisConnectionError):
    """The connection died before a command's reply came; `written`: the command had been
    written to the socket, so Redis may have run it."""

    def __init__(self, message: str, written: bool) -> None:
        super().__init__(message)
        self.written = written


class Overloaded(RedisConnectionError):
    """Refused at once: MAX_IN_FLIGHT commands already wait for Redis on the connection."""


class _Batch:
    """The commands of one caller, and the replies come so far."""

    __slots__ = ("commands", "deadline", "future", "replies", "written")

    def __init__(
        self,
        future: asyncio.Future[list[Any]],
        commands: Sequence[Command],
        deadline: float,
        written: bool,
    ) -> None:
        self.future = future
        self.commands = commands
        self.deadline = deadline  # `timeout` after it was written; inf until then
        self.written = written
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
        self._unwritten: list[_Batch] = []  # whose commands wait in _out
        self._watchdog: asyncio.TimerHandle | None = None
        self._overdue = 0  # the first batches of _pending, failed at their deadline
        self._heard = loop.time()  # bytes last read, or the connection last became busy
        self._reads = 0  # data_received calls so far
        self._reads_judged = 0
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
        idle = not self._pending
        out = self._out
        self.in_flight += len(commands)
        if idle and not out:  # no reply awaited, nothing buffered: write at once
            now = loop.time()
            self._heard = now
            timeout = self._timeout
            deadline = float("inf") if timeout is None else now + timeout
            self._pending.append(_Batch(future, commands, deadline, True))
            self._transport.write(b"".join(packed))
            self._arm()
        else:  # written with the rest of this loop turn's commands
            batch = _Batch(future, commands, float("inf"), False)
            self._pending.append(batch)
            if not out:
                loop.call_soon(self._flush)
            out.extend(packed)
            self._unwritten.append(batch)
        return future

    def _flush(self) -> None:
        out, self._out = self._out, []
        written, self._unwritten = self._unwritten, []
        if self.lost is not None or not out:
            return
        self._transport.write(b"".join(out))
        if self._timeout is not None:
            deadline = self._loop.time() + self._timeout
            for batch in written:
                batch.written = True
                batch.deadline = deadline
        else:
            for batch in written:
                batch.written = True
        self._arm()

    # -- deadlines ------------------------------------------------------------------------

    def _arm(self) -> None:
        """Set the watchdog for the first deadline still to come, unless it is set."""
        if self._watchdog is not None or self._overdue >= len(self._pending):
            return
        deadline = self._pending[self._overdue].deadline
        if deadline != float("inf"):
            self._watchdog = self._loop.call_at(deadline, self._deadline_passed)

    def _deadline_passed(self) -> None:
        """A command's deadline passed: judge it once the loop has read the socket again
        (a loop running late has replies waiting there unread)."""
        self._watchdog = None
        if self.lost is not None:
            return
        if self._overdue >= len(self._pending):  # every command was answered meanwhile
            return
        self._reads_judged = self._reads
        self._watchdog = self._loop.call_later(POLL_GRACE, self._judge)

    def _judge(self) -> None:
        self._watchdog = None
        if self.lost is not None:
            return
        if self._reads != self._reads_judged:  # replies still coming in: read them first
            self._reads_judged = self._reads
            self._watchdog = self._loop.call_later(POLL_GRACE, self._judge)
            return
        now = self._loop.time()
        assert self._timeout is not None
        if self._pending and now - self._heard >= self._timeout:
            self.fail(RedisTimeoutError(f"Redis said nothing for {self._timeout} s"))
            return
        for batch in itertools.islice(self._pending, self._overdue, None):
            if batch.deadline > now:
                break
            self._overdue += 1
            if not batch.future.done():  # its reply, if it comes, is read and dropped
                batch.future.set_exception(
                    RedisTimeoutError(f"no reply from Redis within {self._timeout} s")
                )
        self._arm()

    # -- receiving ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._heard = self._loop.time()
        self._reads += 1
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
                    if self._overdue:
                        self._overdue -= 1
                    self.in_flight -= len(replies)
                    demoted = _as_redis_py_gives(batch.commands, replies) or demoted
                    if not batch.future.done():  # else its caller was cancelled
                        batch.future.set_result(replies)
        except (InvalidResponse, IndexError) as error:  # garbage, or a reply nobody asked for
            self.fail(RedisConnectionError(f"Redis protocol error: {error!r}"))
            return
        if demoted:  # a master that became a replica: connect again, asking Sentinel
            self.fail(RedisConnectionError("the Redis master became a replica"))

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
        dropped = isinstance(error, RedisConnectionError)
        for batch in pending:
            if not batch.future.done():  # an exception each: tracebacks must not pile up
                batch.future.set_exception(
                    Dropped(str(error), batch.written) if dropped else type(error)(*error.args)
                )


def _admitted(wire: _Wire, commands: Sequence[Command]) -> _Wire:
    if not wire.has_room(len(commands)):
        raise Overloaded(
            f"{MAX_IN_FLIGHT} commands already wait for Redis on this connection; refused at once"
        )
    return wire


def _read_only(command: Command) -> bool:
    """Whether a command changes nothing in Redis: the read script, or a plain read."""
    name = str(command[0]).upper()
    if name == "EVAL":
        return bool(command[1] == READ)
    return name in _READ_ONLY


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
        self._retry_at = 0.0
        self._closed = False
        self.connections_opened = 0

    @property
    def in_flight(self) -> int:
        """Commands issued on the current connection and not answered yet."""
        return 0 if self._wire is None else self._wire.in_flight

    async def run(self, commands: Sequence[Command], errors_as_replies: bool = False) -> list[Any]:
        """Run the commands in one round trip (EVAL by its SHA, NOSCRIPT sent again as
        EVAL) and return their replies, raising the first error among them (with
        `errors_as_replies`, returning it in its place)."""
        if not commands:
            return []
        sent = [by_sha(command) for command in commands]
        try:
            replies = await self._send(sent)
        except Dropped as error:
            if error.written and not all(map(_read_only, commands)):
                raise  # a write Redis may have applied: not sent twice
            replies = await self._send(sent)  # once more, on a new connection
        for reply in replies:
            if isinstance(reply, Exception):
                return await self._after_errors(commands, replies, errors_as_replies)
        return replies

    async def _after_errors(
        self, commands: Sequence[Command], replies: list[Any], errors_as_replies: bool
    ) -> list[Any]:
        """Scripts Redis did not know sent again as EVAL; then the first error raised, or
        with `errors_as_replies` left in its place."""
        for index, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):
                (replies[index],) = await self._send([commands[index]])
        return replies if errors_as_replies else raised(replies)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """One command; `options` (redis-py's per-command keywords) are not used."""
        (reply,) = await self.run([args])
        return reply

    def _send(self, commands: Sequence[Command]) -> Awaitable[list[Any]]:
        """The replies, once they came: on an open connection, the future the wire
        answers, with no coroutine of its own."""
        wire = self._wire
        if wire is None or wire.lost is not None or self._forks != _forks:
            return self._send_when_ready(commands)
        return _admitted(wire, commands).send(commands)

    async def _send_when_ready(self, commands: Sequence[Command]) -> list[Any]:
        wire = await self._connected()
        return await _admitted(wire, commands).send(commands)

    async def _connected(self) -> _Wire:
        """The open connection, opened now if need be. An attempt is made at most once per
        RECONNECT_FLOOR: a caller arriving sooner after a failed one waits for the floor's
        end if it comes before the caller's deadline, and fails at once otherwise."""
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
                        raise RedisConnectionError("Redis unreachable; reconnecting shortly")
                    await asyncio.sleep(wait)
                    continue
                self._connecting = loop.create_future()
                self._connect_task = loop.create_task(self._connect(self._connecting))
            # shield: a cancelled caller must not cancel the attempt the others wait for.
            return await asyncio.shield(self._connecting)

    async def _connect(self, done: asyncio.Future[_Wire]) -> None:
        loop = asyncio.get_running_loop()
        connection = self._connector()
        connection.protocol = PROTOCOL  # its handshake says no HELLO 3
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
            self._retry_at = loop.time() + RECONNECT_FLOOR
            self._connecting = None
            if isinstance(error, (asyncio.TimeoutError, RedisTimeoutError)):
                error = RedisConnectionError(f"connecting to Redis timed out: {error!r}")
            elif not isinstance(error, Exception):
                done.cancel()
                raise
            done.set_exception(error)
            done.exception()  # retrieved here: no caller may be left to await it
            return
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
            self._retry_at = 0.0
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
