"""Following a Sentinel service's master, as the Redis Sentinel client guidelines ask.

One `MasterFollower` per configuration knows where the master is. Off the request path,
a thread per sentinel subscribes to its events and asks it every ASK_INTERVAL seconds
(in case a message was missed) where the master is, with the configuration epoch of
that answer: an answer older than the one known is ignored, so a sentinel that has not
heard of a failover yet never sends the clients back to the old master. Every connection
opens to the master the follower knows (redis-py's discovery only until it knows one)
and checks ``ROLE`` before it is used.

A failover is followed from its start, on the sentinel that leads it: from
``+failover-state-send-slaveof-noone`` (the replica is about to be promoted) no
connection to the master is used or opened, until ``+promoted-slave`` names the new
master (or ``+switch-master``, or the failover is aborted, or FAILOVER_PAUSE passed).
Every time the master moves, or a failover starts, every client of the configuration is
told (`follow`) and closes its connections to the old master, busy or idle: a command in
flight there fails, so nothing the old master acknowledges after the failover is known
is reported as written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio.connection
import redis.asyncio.sentinel
import redis.connection
import redis.sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

Address = tuple[str, int]
ASK_INTERVAL = 1.0  # seconds between two questions to each sentinel
# The longest a failover's start keeps the clients off the master, with no end heard.
FAILOVER_PAUSE = 5.0
EVENTS = (
    "+switch-master",
    "+failover-state-send-slaveof-noone",
    "+promoted-slave",
    "-failover-abort-*",
)
_Callback = Callable[[Address | None], None]
_Listener = tuple["weakref.WeakMethod[_Callback]", "asyncio.AbstractEventLoop | None"]


class MasterFollower:
    """Where the master of `service` is, and the clients to tell when it moves."""

    def __init__(
        self, sentinels: list[Address], service: str, sentinel_options: dict[str, Any]
    ) -> None:
        self.sentinels = sentinels
        self.service = service
        self.sentinel_options = sentinel_options
        self.address: Address | None = None
        self.epoch = -1  # the configuration epoch `address` comes with
        self._failover_until = 0.0
        self._lock = threading.Lock()
        self._listeners: list[_Listener] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        _followers.add(self)

    @property
    def failing_over(self) -> bool:
        """True from a failover's start until its new master is known."""
        return time.monotonic() < self._failover_until

    def master(self, fallback: Any) -> Any:
        """The master to keep connections to: none during a failover, else the one
        known, else `fallback` (what redis-py found)."""
        if self.failing_over:
            return None
        return self.address or fallback

    def known(self, address: Any, epoch: int) -> None:
        """A sentinel says the master is at `address` as of configuration `epoch`: unless
        an answer as new was known already, the failover (if any) is over, and if the
        master moved every client hears it now, in its own thread or event loop."""
        where = (str(address[0]), int(address[1]))
        with self._lock:
            if epoch <= self.epoch and self.address is not None:
                return
            moved, self.address, self.epoch = where != self.address, where, epoch
            self._failover_until = 0.0
        if moved:
            self._tell(where)

    def promoted(self, address: Any) -> None:
        """The sentinel leading a failover promoted the replica at `address`: the master
        from now on, newer than any configuration known (the failover's epoch is)."""
        self.known(address, self.epoch + 1)

    def failover_started(self) -> None:
        """A failover is about to promote a replica: leave the master now."""
        with self._lock:
            self._failover_until = time.monotonic() + FAILOVER_PAUSE
        self._tell(None)

    def failover_aborted(self) -> None:
        with self._lock:
            self._failover_until = 0.0

    def _tell(self, address: Address | None) -> None:
        with self._lock:
            self._listeners = [entry for entry in self._listeners if entry[0]() is not None]
            listeners = list(self._listeners)
        for ref, loop in listeners:
            listener = ref()
            if listener is not None:
                _call(listener, address, loop)

    def follow(self, listener: _Callback, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Call `listener` (a bound method, held weakly) with the master's new address
        whenever it moves (None: a failover started, no master for now), in `loop` when
        given; the watching threads start with the first listener."""
        with self._lock:
            self._listeners.append((weakref.WeakMethod(listener), loop))
        self.watch()

    def watch(self) -> None:
        """Start the watching threads, if clients listen and none runs: at the first
        listener, after the last one was gone, after `close`, in a process just forked
        (threads do not survive a fork)."""
        with self._lock:
            if not self._listeners or (self._threads and not self._stop.is_set()):
                return
            self._stop = threading.Event()
            self._threads = [
                threading.Thread(
                    target=_watch,
                    args=(weakref.ref(self), sentinel, self._stop),
                    name=f"session_middleware sentinel watch ({self.service})",
                    daemon=True,
                )
                for sentinel in self.sentinels
            ]
            for thread in self._threads:
                thread.start()

    def unwanted(self) -> bool:
        """True, and the watching threads are to end, when no client listens any more."""
        with self._lock:
            self._listeners = [entry for entry in self._listeners if entry[0]() is not None]
            if self._listeners:
                return False
            self._stop.set()
            return True

    def close(self) -> None:
        self._stop.set()

    def __del__(self) -> None:
        self._stop.set()

    def _forked(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []


_followers: weakref.WeakSet[MasterFollower] = weakref.WeakSet()


def _forked() -> None:
    for follower in list(_followers):
        follower._forked()


os.register_at_fork(after_in_child=_forked)


def _watch(ref: weakref.ref[MasterFollower], sentinel: Address, stop: threading.Event) -> None:
    """The thread watching one sentinel: its events, and its answer every ASK_INTERVAL.
    It ends when the follower is closed or gone, or has no client left to tell."""
    follower = ref()
    if follower is None:
        return
    service, options = follower.service, follower.sentinel_options
    del follower
    while not stop.is_set():
        try:
            # The subscription waits for events ASK_INTERVAL at a time, longer than a
            # socket timeout; questions are asked on a connection with one.
            listening = {**options, "socket_timeout": None}
            with (
                redis.Redis(host=sentinel[0], port=sentinel[1], **options) as client,
                redis.Redis(host=sentinel[0], port=sentinel[1], **listening) as listener,
                listener.pubsub() as sub,
            ):
                sub.psubscribe(*EVENTS)
                asked = 0.0
                while not stop.is_set():
                    message = sub.get_message(ignore_subscribe_messages=True, timeout=ASK_INTERVAL)
                    follower = ref()
                    if follower is None or follower.unwanted():
                        return
                    event = _event(message, service)
                    if event is not None:
                        _heard(follower, event, client, service)
                    if time.monotonic() - asked >= ASK_INTERVAL:
                        asked = time.monotonic()
                        _ask(follower, client, service)
                    del follower
        except (RedisError, OSError, LookupError, ValueError):  # or an answer not understood
            stop.wait(ASK_INTERVAL / 2)


def _heard(
    follower: MasterFollower, event: tuple[str, list[str]], client: Any, service: str
) -> None:
    name, parts = event
    if name == "+failover-state-send-slaveof-noone":
        follower.failover_started()
    elif name == "+promoted-slave" and len(parts) >= 4 and parts[3].isdigit():
        follower.promoted((parts[2], int(parts[3])))
    elif name.startswith("-failover-abort"):
        follower.failover_aborted()
    elif name == "+switch-master":
        _ask(follower, client, service)


def _ask(follower: MasterFollower, client: Any, service: str) -> None:
    """Where this sentinel says the master is, and as of which configuration epoch; an
    answer about a master it sees as down changes nothing."""
    state = client.sentinel_master(service)
    if state["is_master"] and not state["is_sdown"] and not state["is_odown"]:
        follower.known((state["ip"], int(state["port"])), int(state.get("config-epoch", 0)))


def _event(message: Any, service: str) -> tuple[str, list[str]] | None:
    """An event about `service`: its name and words. ``+switch-master`` says
    ``<service> <old ip> <old port> <new ip> <new port>``, the others
    ``<kind> <name> <ip> <port> [@ <service> <ip> <port>]``."""
    if not message or message.get("type") != "pmessage":
        return None
    name, parts = _text(message["channel"]), _text(message["data"]).split()
    if name == "+switch-master":
        about = parts[0] if parts else None
    else:
        about = (
            parts[parts.index("@") + 1] if "@" in parts[:-1] else parts[1] if parts[1:] else None
        )
    return (name, parts) if about == service else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- the connections: ROLE on connect, and the follower told -------------------------------


def _master_now(follower: MasterFollower | None) -> Address | None:
    """The master the follower knows (None: not yet); raises during a failover."""
    if follower is None:
        return None
    follower.watch()
    if follower.failing_over:
        raise RedisConnectionError("a Sentinel failover is under way")
    return follower.address


def _check_still_master(follower: MasterFollower | None, address: Any) -> None:
    """Raise if the master moved, or a failover started, while the connection opened."""
    known = _master_now(follower)
    if known is not None and known != (address[0], int(address[1])):
        raise RedisConnectionError("the Redis master moved while connecting")


def _not_master(role: Any) -> bool:
    first = role[0] if isinstance(role, (list, tuple)) and role else role
    name = first.decode() if isinstance(first, bytes) else str(first)
    return name != "master"


class MasterConnection(redis.sentinel.SentinelManagedConnection):
    """A connection to a Sentinel service's master that checks, once connected, that the
    server says it is the master (``ROLE``), and tells the follower where it is."""

    def __init__(self, *, follower: MasterFollower | None = None, **kwargs: Any) -> None:
        self.follower = follower
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]

    def _connect_retry(self) -> None:
        if self._sock:
            return
        known = _master_now(self.follower)
        self.connect_to(known or self.connection_pool.get_master_address())

    def connect_to(self, address: Any) -> None:
        super().connect_to(address)  # type: ignore[no-untyped-call]
        self.send_command("ROLE")  # type: ignore[no-untyped-call]
        if _not_master(self.read_response()):
            self.disconnect()  # type: ignore[no-untyped-call]
            raise RedisConnectionError(f"{address[0]}:{address[1]} is no longer the master")
        _check_still_master(self.follower, address)

    def abort(self) -> None:
        """Fail the command this connection is running, from any thread."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class MasterSSLConnection(MasterConnection, redis.connection.SSLConnection):
    """MasterConnection over TLS."""


class AsyncMasterConnection(redis.asyncio.sentinel.SentinelManagedConnection):
    """The async twin of MasterConnection."""

    def __init__(self, *, follower: MasterFollower | None = None, **kwargs: Any) -> None:
        self.follower = follower
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]

    async def _connect_retry(self) -> None:
        if self._reader:
            return
        known = _master_now(self.follower)
        await self.connect_to(known or await self.connection_pool.get_master_address())

    async def connect_to(self, address: Any) -> None:
        await super().connect_to(address)  # type: ignore[no-untyped-call]
        await self.send_command("ROLE")
        if _not_master(await self.read_response()):
            await self.disconnect()
            raise RedisConnectionError(f"{address[0]}:{address[1]} is no longer the master")
        _check_still_master(self.follower, address)

    def abort(self) -> None:
        """Fail the command this connection is running (in its event loop)."""
        writer = self._writer
        if writer is not None:
            writer.transport.abort()


class AsyncMasterSSLConnection(AsyncMasterConnection, redis.asyncio.connection.SSLConnection):
    """AsyncMasterConnection over TLS."""


def _call(
    listener: _Callback, address: Address | None, loop: asyncio.AbstractEventLoop | None
) -> None:
    """`listener(address)`, in `loop` when given: at once when called there, else as its
    next callback (and not at all once the loop is closed)."""
    if loop is None:
        listener(address)
        return
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        listener(address)
    else:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(listener, address)
