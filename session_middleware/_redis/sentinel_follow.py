"""Following a Sentinel service's master, as the Redis Sentinel client guidelines ask.

One `MasterFollower` per configuration knows where the master is. A thread, off the
request path, subscribes to a sentinel's ``+switch-master`` and asks it where the master
is every ASK_INTERVAL seconds, in case a message was missed. Every connection opens to
the master the follower knows (redis-py's discovery only until it knows one) and checks
``ROLE`` before it is used. The moment the follower hears of a new master, every client
of the configuration is told (`follow`) and closes its connections to the old one, busy
or idle: a command in flight there fails, so nothing the old master acknowledges after
the switch is known is reported as written.
"""

from __future__ import annotations

import asyncio
import contextlib
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
ASK_INTERVAL = 1.0  # seconds between two questions to the sentinels
CHANNEL = "+switch-master"
_Callback = Callable[[Address], None]
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
        self._lock = threading.Lock()
        self._listeners: list[_Listener] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def known(self, address: Any) -> None:
        """The sentinel says the master is at `address`: if it moved, every client hears
        it now, in its own thread or event loop."""
        where = (str(address[0]), int(address[1]))
        with self._lock:
            if where == self.address:
                return
            self.address = where
            self._listeners = [entry for entry in self._listeners if entry[0]() is not None]
            listeners = list(self._listeners)
        for ref, loop in listeners:
            listener = ref()
            if listener is not None:
                _call(listener, where, loop)

    def follow(
        self, listener: Callable[[Address], None], loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """Call `listener` (a bound method, held weakly) with the master's new address
        whenever it moves, in `loop` when given; the watching thread starts with the
        first listener."""
        with self._lock:
            self._listeners.append((weakref.WeakMethod(listener), loop))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=_watch,
                    args=(weakref.ref(self), self._stop),
                    name=f"session_middleware sentinel watch ({self.service})",
                    daemon=True,
                )
                self._thread.start()

    def listening(self) -> bool:
        with self._lock:
            return any(ref() is not None for ref, _ in self._listeners)

    def close(self) -> None:
        self._stop.set()

    def __del__(self) -> None:
        self._stop.set()


def _watch(ref: weakref.ref[MasterFollower], stop: threading.Event) -> None:
    """The watching thread: one sentinel at a time (the next one when it fails), its
    ``+switch-master`` messages, and its answer every ASK_INTERVAL. One sentinel's view
    only moves forward, so the address known never flips back to an older master. The
    thread ends when the follower is closed or gone, or has no client left to tell."""
    follower = ref()
    if follower is None:
        return
    sentinels, service = list(follower.sentinels), follower.service
    options = follower.sentinel_options
    del follower
    turn = 0
    while not stop.is_set():
        host, port = sentinels[turn % len(sentinels)]
        asker = redis.sentinel.Sentinel([(host, port)], sentinel_kwargs=options)
        try:
            with redis.Redis(host=host, port=port, **options) as client, client.pubsub() as sub:
                sub.subscribe(CHANNEL)
                asked = 0.0
                while not stop.is_set():
                    message = sub.get_message(ignore_subscribe_messages=True, timeout=ASK_INTERVAL)
                    follower = ref()
                    if follower is None or not follower.listening():
                        return
                    moved = _switched(message, service)
                    if moved is not None:
                        follower.known(moved)
                    if time.monotonic() - asked >= ASK_INTERVAL:
                        asked = time.monotonic()
                        follower.known(asker.discover_master(service))
                    del follower
        except (RedisError, OSError):
            turn += 1
            stop.wait(0.1)
        finally:
            for connection in asker.sentinels:
                connection.close()


def _switched(message: Any, service: str) -> Address | None:
    """The new master's address in a ``+switch-master`` message about `service`:
    ``<service> <old ip> <old port> <new ip> <new port>``."""
    if not message or message.get("type") != "message":
        return None
    data = message["data"]
    parts = (data.decode() if isinstance(data, bytes) else str(data)).split()
    if len(parts) != 5 or parts[0] != service or not parts[4].isdigit():
        return None
    return parts[3], int(parts[4])


# -- the connections: ROLE on connect, and the follower told -------------------------------


def _check_still_master(follower: MasterFollower | None, address: Any) -> None:
    """Raise if the master moved while the connection was opened."""
    known = None if follower is None else follower.address
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
        known = None if self.follower is None else self.follower.address
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
    pass


class AsyncMasterConnection(redis.asyncio.sentinel.SentinelManagedConnection):
    """The async twin of MasterConnection."""

    def __init__(self, *, follower: MasterFollower | None = None, **kwargs: Any) -> None:
        self.follower = follower
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]

    async def _connect_retry(self) -> None:
        if self._reader:
            return
        known = None if self.follower is None else self.follower.address
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
    pass


def _call(
    listener: Callable[[Address], None], address: Address, loop: asyncio.AbstractEventLoop | None
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
