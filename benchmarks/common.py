"""What every part shares: the Redis, the secret, the run's key prefix, a minimal ASGI
driver, command counting, and redis-servers of a part's own."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

from session_middleware._protocol import lua_scripts
from session_middleware._transport import multiplexed
from session_middleware._transport.round_trip import script_sha

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "benchmark-secret-key-0123456789abcdefghijklmnop"
SESSION_LIFETIME = 14 * 24 * 60 * 60
COOKIE = "session"
ROOT = Path(__file__).resolve().parent.parent


def new_prefix() -> str:
    """A key prefix of this run's own; everything under it is deleted at the end."""
    return f"smbench:{uuid.uuid4().hex[:10]}:"


def delete_prefix(prefix: str, url: str = REDIS_URL) -> int:
    """UNLINK every key under `prefix` in batches (never a flush); how many were deleted."""
    if not prefix or "*" in prefix:
        raise ValueError("refusing to delete without a literal prefix")
    client = redis.Redis.from_url(url)
    deleted, batch = 0, []
    try:
        for key in client.scan_iter(match=prefix + "*", count=10_000):
            batch.append(key)
            if len(batch) >= 10_000:
                deleted, batch = deleted + client.unlink(*batch), []
        if batch:
            deleted += client.unlink(*batch)
    finally:
        client.close()
    return deleted


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a minimal ASGI driver: an HTTP client in the loop would cost more than the middleware --


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def cookie(self) -> str | None:
        """The Cookie header that carries the session this response sets, or None."""
        for name, value in self.headers:
            pair = value.decode("latin-1").split(";", 1)[0]
            if name.lower() == b"set-cookie" and pair.startswith(f"{COOKIE}="):
                return pair
        return None


class Request:
    """One prepared request, sent as many times as needed."""

    def __init__(self, method: str, path: str, cookie: str | None = None) -> None:
        headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench")]
        if cookie is not None:
            headers.append((b"cookie", cookie.encode("latin-1")))
        path, _, query = path.partition("?")
        self._scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }

    async def send(self, app: Any) -> None:
        """Run the request; the response is discarded (what the timings run)."""

        async def discard(message: dict[str, Any]) -> None:
            return None

        await app(dict(self._scope), _receive_once(), discard)

    async def fetch(self, app: Any) -> Response:
        response = Response()

        async def keep(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response.status = message["status"]
                response.headers = list(message.get("headers", ()))
            elif message["type"] == "http.response.body":
                response.body += message.get("body", b"")

        await app(dict(self._scope), _receive_once(), keep)
        return response


def _receive_once() -> Any:
    given = False

    async def receive() -> dict[str, Any]:
        nonlocal given
        if given:
            return {"type": "http.disconnect"}
        given = True
        return {"type": "http.request", "body": b"", "more_body": False}

    return receive


# -- counting what reaches Redis ----------------------------------------------------------

SCRIPTS = {
    body: name
    for name, body in vars(lua_scripts).items()
    if name.isupper() and isinstance(body, str) and "redis." in body
}
SCRIPTS.update({script_sha(body): name for body, name in list(SCRIPTS.items())})
READ_ONLY = frozenset({"GET", "MGET", "HGETALL", "EVAL:READ", "PING", "MULTI", "EXEC"})


def command_name(args: tuple[Any, ...]) -> str:
    """The command's name, scripts named: EVAL:READ for the READ script, by text or SHA."""
    name = str(args[0]).upper()
    if name in ("EVAL", "EVALSHA") and len(args) > 1:
        script = args[1].decode() if isinstance(args[1], bytes) else args[1]
        return f"EVAL:{SCRIPTS.get(script, '?')}"
    return name


class Counter:
    """Round trips (packets sent) and commands sent through the counted connections."""

    def __init__(self) -> None:
        self.round_trips = 0
        self.commands: list[str] = []

    def reset(self) -> None:
        self.round_trips, self.commands = 0, []

    @property
    def writes(self) -> int:
        return sum(1 for name in self.commands if name not in READ_ONLY)


@contextlib.contextmanager
def counting(counter: Counter) -> Iterator[Counter]:
    """Count what every Redis connection of this process sends, while inside: redis-py's
    asyncio connections and the multiplexed connection (a batch it writes is a round trip).
    Count with nothing else running."""
    connection, wire = redis.asyncio.Connection, multiplexed._Wire
    pack, send, batch = connection.pack_command, connection.send_packed_command, wire.send

    def send_batch(self: Any, commands: Any) -> Any:
        counter.round_trips += 1
        counter.commands.extend(command_name(tuple(command)) for command in commands)
        return batch(self, commands)

    def pack_command(self: Any, *args: Any) -> Any:
        counter.commands.append(command_name(args))
        return pack(self, *args)

    async def send_packed_command(self: Any, *args: Any, **kwargs: Any) -> None:
        counter.round_trips += 1
        await send(self, *args, **kwargs)

    connection.pack_command = pack_command  # type: ignore[method-assign]
    connection.send_packed_command = send_packed_command  # type: ignore[method-assign]
    wire.send = send_batch  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        connection.pack_command = pack  # type: ignore[method-assign]
        connection.send_packed_command = send  # type: ignore[method-assign]
        wire.send = batch  # type: ignore[method-assign]


# -- redis-servers of a part's own (faults, Redis's CPU per operation) ---------------------


class RedisServer:
    """A redis-server on a free loopback port, no persistence unless `options` ask for it."""

    def __init__(self, options: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="smbench-redis-"))
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)

    def start(self) -> float:
        """Start it; the moment it first answered PING (polled every millisecond)."""
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--dir", str(self.directory), *self.options]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.ConnectionError):
                if self.client().ping():
                    return time.monotonic()
            time.sleep(0.001)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """`count` processes spinning on the CPU for the `with` block."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
