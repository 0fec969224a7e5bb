"""The request path's connection in the moments production brings, on redis-servers of
this part's own: a burst of concurrent logged-in reads in one worker (alone, and on a CPU
shared with two busy processes), the app's connections killed by Redis (`CLIENT KILL`)
under load, and Redis killed and started again under load. Reported: the 503s, how often
the shared connection was opened again, and how soon every device was served once Redis
answered PING. Both connection modes: the multiplexed connection and redis-py's pool."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from session_middleware._transport.multiplexed import MultiplexedRedis

from .common import RedisServer, Request, busy_processes
from .variants import Variant, build

BURST = 10_000
USERS = 100
KILL_DEVICES = 24
RECOVERY_DEVICES = 24
PAUSES = (0.0, 0.1)  # between one device's requests, in the recovery case
OUTAGE = 3.0  # seconds Redis stays down
MODES = {"multiplexed": "ours-redis", "pool": "ours-redispy"}


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


async def _call(variant: Variant, method: str, path: str, cookie: str | None = None) -> int:
    return (await Request(method, path, cookie).fetch(variant.app)).status


async def _logged_in(variant: Variant, users: int, name: str) -> list[str]:
    cookies = []
    for index in range(users):
        response = await Request("POST", f"/login?user={name}-{index}").fetch(variant.app)
        cookie = response.cookie()
        assert response.status == 200 and cookie is not None
        cookies.append(cookie)
    return cookies


def _opened(variant: Variant) -> int:
    client = variant.config.redis.async_()
    return client.connections_opened if isinstance(client, MultiplexedRedis) else 0


async def burst(server: RedisServer, connection: str, busy: int) -> Burst:
    variant = build(MODES[connection], "burst:", server.url)
    cookies = await _logged_in(variant, USERS, "burst")
    opened = _opened(variant)
    with busy_processes(busy):
        started = time.perf_counter()
        statuses = await asyncio.gather(
            *(_call(variant, "GET", "/read", cookies[i % USERS]) for i in range(BURST))
        )
        seconds = time.perf_counter() - started
    reconnects = _opened(variant) - opened
    await variant.close()
    return Burst(connection, busy, BURST, statuses.count(503), reconnects, seconds)


async def kills(server: RedisServer, connection: str, rounds: int) -> Kills:
    variant = build(MODES[connection], "kills:", server.url, redis_timeout=0.5)
    cookies = await _logged_in(variant, KILL_DEVICES, "kill")
    reads: list[int] = []
    writes: list[int] = []
    done = [0] * KILL_DEVICES
    stop = asyncio.Event()

    async def browse(index: int) -> None:
        while not stop.is_set():
            writer = index % 3 == 0
            method, path = ("POST", "/write") if writer else ("GET", "/read")
            status = await _call(variant, method, path, cookies[index])
            (writes if writer else reads).append(status)
            done[index] += 1
            await asyncio.sleep(0)

    load = asyncio.ensure_future(asyncio.gather(*(browse(i) for i in range(KILL_DEVICES))))
    admin = server.client()
    for _ in range(rounds):
        before = list(done)
        admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        while any(now <= then + 1 for now, then in zip(done, before, strict=True)):
            await asyncio.sleep(0.001)
    stop.set()
    await load
    await variant.close()
    return Kills(connection, rounds, len(reads), reads.count(503), len(writes), writes.count(503))


async def recovery(server: RedisServer, connection: str, pause: float) -> Recovery:
    variant = build(MODES[connection], "restart:", server.url)
    cookies = await _logged_in(variant, RECOVERY_DEVICES, "restart")
    found = Recovery(connection, pause, RECOVERY_DEVICES, OUTAGE)
    answered: list[float] = []  # when Redis first answered PING
    served: dict[int, float] = {}

    async def browse(index: int) -> None:
        await asyncio.sleep(index * pause / RECOVERY_DEVICES)  # devices out of step
        while index not in served:
            started = time.monotonic()
            status = await _call(variant, "GET", "/read", cookies[index])
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
        answered.append(await asyncio.to_thread(server.start))

    await asyncio.wait_for(
        asyncio.gather(outage(), *(browse(i) for i in range(RECOVERY_DEVICES))), 120
    )
    found.served_again_ms = sorted((at - answered[0]) * 1000 for at in served.values())
    await variant.close()
    return found


def _on_own_server(options: tuple[str, ...], case: Callable[..., Any], *arguments: Any) -> Any:
    with RedisServer(options) as server:
        return asyncio.run(case(server, *arguments))


def measure(results: Any, kill_rounds: int) -> None:
    found = Faults()
    log = partial(print, file=sys.stderr, flush=True)
    for connection in MODES:
        for busy in (0, 2):
            log(f"  a burst of {BURST} reads, {connection}, {busy} busy processes...")
            found.bursts.append(_on_own_server((), burst, connection, busy))
        log(f"  {kill_rounds} CLIENT KILLs under load, {connection}...")
        found.kills.append(_on_own_server((), kills, connection, kill_rounds))
        durable = ("--appendonly", "yes", "--appendfsync", "always")
        for pause in PAUSES:
            log(f"  Redis killed for {OUTAGE} s and started again, {connection}, {pause}...")
            found.recoveries.append(_on_own_server(durable, recovery, connection, pause))
    results.facts["faults"] = asdict(found)
