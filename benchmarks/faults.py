"""The request path's connection in the moments production brings, on redis-servers of
this part's own: a burst of concurrent logged-in reads in one worker (alone, and on a CPU
shared with two busy processes), the app's connections killed by Redis (`CLIENT KILL`)
under load, and Redis killed and started again under load. Reported: the 503s, how often
the shared connection was opened again, and how soon every device was served once Redis
answered PING. Both connection modes: the multiplexed connection and redis-py's pool."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from session_middleware import sessions
from session_middleware._transport.multiplexed import MultiplexedRedis
from tests.support.apps import asgi_app
from tests.support.busy import busy_processes
from tests.support.http import asgi_call
from tests.support.redis_servers import RedisServer, spawn, standalone

from .settings import SECRET, Mode

BURST = 10_000
USERS = 100
KILL_DEVICES = 24
RECOVERY_DEVICES = 24
PAUSES = (0.0, 0.1)  # between one device's requests, in the recovery case
OUTAGE = 3.0  # seconds Redis stays down
MODES = {"multiplexed": True, "pool": False}


@dataclass
class Burst:
    connection: str
    busy_processes: int
    requests: int
    refused: int  # 503s
    reconnects: int  # the shared connection opened again (multiplexed only)
    seconds: float


@dataclass
class Kills:
    connection: str
    kills: int
    reads: int
    reads_refused: int
    writes: int
    writes_refused: int


@dataclass
class Recovery:
    connection: str
    pause: float
    devices: int
    outage_s: float
    refused_ms: list[float] = field(default_factory=list)  # each 503 of the outage
    served_again_ms: list[float] = field(default_factory=list)  # per device, from PING
    # Per device, how long its first request begun after PING took to be served.
    first_request_ms: list[float] = field(default_factory=list)
    refused_after_ping: int = 0


@dataclass
class Faults:
    bursts: list[Burst] = field(default_factory=list)
    kills: list[Kills] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)


async def _call(app: Any, path: str, cookie: str | None = None) -> tuple[int, str | None]:
    """(status, the session cookie the response sets or None)."""
    cookies = [] if cookie is None else [f"session={cookie}".encode()]
    status, headers, _ = await asgi_call(app, path, cookies)
    set_cookie = headers.get("set-cookie", "")
    return status, set_cookie.split(";")[0].partition("=")[2] or None


async def _logged_in(app: Any, users: int, name: str) -> list[str]:
    cookies = []
    for index in range(users):
        status, cookie = await _call(app, f"/login?user={name}-{index}")
        assert status == 200 and cookie is not None
        cookies.append(cookie)
    return cookies


def _opened(config: Any) -> int:
    client = config.redis.async_()
    return client.connections_opened if isinstance(client, MultiplexedRedis) else 0


async def burst(server: RedisServer, connection: str, busy: int) -> Burst:
    config = sessions(secret_key=SECRET, redis_url=server.url, redis_multiplex=MODES[connection])
    app = config(asgi_app)
    cookies = await _logged_in(app, USERS, "burst")
    opened = _opened(config)
    with busy_processes(busy, Path(tempfile.mkdtemp(prefix="smbench-busy-"))):
        started = time.perf_counter()
        replies = await asyncio.gather(
            *(_call(app, "/read", cookies[i % USERS]) for i in range(BURST))
        )
        seconds = time.perf_counter() - started
    statuses = [status for status, _ in replies]
    await config.aclose()
    return Burst(connection, busy, BURST, statuses.count(503), _opened(config) - opened, seconds)


async def kills(server: RedisServer, connection: str, rounds: int) -> Kills:
    config = sessions(
        secret_key=SECRET,
        redis_url=server.url,
        redis_timeout=0.5,
        redis_multiplex=MODES[connection],
    )
    app = config(asgi_app)
    cookies = await _logged_in(app, KILL_DEVICES, "kill")
    reads: list[int] = []
    writes: list[int] = []
    done = [0] * KILL_DEVICES
    stop = asyncio.Event()

    async def browse(index: int) -> None:
        while not stop.is_set():
            writer = index % 3 == 0
            path = f"/set?key=n&value={done[index]}" if writer else "/read"
            status, _ = await _call(app, path, cookies[index])
            (writes if writer else reads).append(status)
            done[index] += 1
            await asyncio.sleep(0)

    load = asyncio.ensure_future(asyncio.gather(*(browse(i) for i in range(KILL_DEVICES))))
    with server.client() as admin:
        for _ in range(rounds):
            before = list(done)
            admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            while any(now <= then + 1 for now, then in zip(done, before, strict=True)):
                await asyncio.sleep(0.001)
    stop.set()
    await load
    await config.aclose()
    return Kills(connection, rounds, len(reads), reads.count(503), len(writes), writes.count(503))


def _wait_for_ping(server: RedisServer) -> float:
    """Start the killed server; the moment it first answered PING (polled every ms)."""
    server.process = spawn(server.command_line(), server.directory / "server.log", server.directory)
    deadline = time.monotonic() + 30
    while not server.ping():
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.001)
    return time.monotonic()


async def recovery(server: RedisServer, connection: str, pause: float) -> Recovery:
    config = sessions(secret_key=SECRET, redis_url=server.url, redis_multiplex=MODES[connection])
    app = config(asgi_app)
    cookies = await _logged_in(app, RECOVERY_DEVICES, "restart")
    found = Recovery(connection, pause, RECOVERY_DEVICES, OUTAGE)
    answered: list[float] = []  # when Redis first answered PING
    served: dict[int, float] = {}

    async def browse(index: int) -> None:
        await asyncio.sleep(index * pause / RECOVERY_DEVICES)  # devices out of step
        while index not in served:
            started = time.monotonic()
            status, _ = await _call(app, "/read", cookies[index])
            ended = time.monotonic()
            after_ping = bool(answered) and started >= answered[0]
            if status == 503:
                if after_ping:
                    found.refused_after_ping += 1
                else:
                    found.refused_ms.append((ended - started) * 1000)
            elif answered:
                served[index] = ended
                if after_ping:
                    found.first_request_ms.append((ended - started) * 1000)
            await asyncio.sleep(pause)

    async def outage() -> None:
        await asyncio.sleep(0.3)
        server.kill()
        await asyncio.sleep(OUTAGE)
        answered.append(await asyncio.to_thread(_wait_for_ping, server))

    await asyncio.wait_for(
        asyncio.gather(outage(), *(browse(i) for i in range(RECOVERY_DEVICES))), 120
    )
    found.served_again_ms = sorted((at - answered[0]) * 1000 for at in served.values())
    await config.aclose()
    return found


def _on_own_server(options: list[str], case: Callable[..., Any], *arguments: Any) -> Any:
    group, server = standalone(options)
    try:
        return asyncio.run(case(server, *arguments))
    finally:
        group.stop()


def measure(mode: Mode, log: Callable[[str], None]) -> Faults:
    found = Faults()
    rounds = 80 if mode.name == "full" else 20
    for connection in MODES:
        for busy in (0, 2):
            log(f"  a burst of {BURST} reads, {connection}, {busy} busy processes...")
            found.bursts.append(_on_own_server([], burst, connection, busy))
        log(f"  {rounds} CLIENT KILLs under load, {connection}...")
        found.kills.append(_on_own_server([], kills, connection, rounds))
        durable = ["--appendonly", "yes", "--appendfsync", "always"]
        for pause in PAUSES:
            log(f"  Redis killed for {OUTAGE} s and started again, {connection}, {pause}...")
            found.recoveries.append(_on_own_server(durable, recovery, connection, pause))
    return found
