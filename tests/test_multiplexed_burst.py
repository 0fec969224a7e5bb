"""The multiplexed connection in the moments production brings, against a healthy Redis
of the test's own: a burst of 10,000 concurrent reads in one worker (alone, and on a CPU
shared with busy processes), the app's connections killed by Redis (`CLIENT KILL`: an
idle timeout at a proxy, Redis's own `timeout`, a managed Redis's maintenance), and a
restart. Outcomes are counted: 503s, connections opened, which connection reached Redis
first; never wall time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis

from session_middleware import sessions
from session_middleware._transport import multiplexed
from session_middleware._transport.clients import RedisClients
from session_middleware._transport.multiplexed import MultiplexedRedis

from .support import SECRET, new_prefix
from .support.apps import asgi_app
from .support.busy import busy_processes
from .support.redis_servers import RedisServer, server, standalone
from .test_multiplexed import Device, call

__all__ = ["server"]  # the fixture

pytestmark = pytest.mark.anyio

BURST = 10_000
USERS = 100
TEST_BOUND = 120.0  # a hang fails the test instead of blocking the run
KILLS = 40
DEVICES = 24


@pytest.mark.parametrize("spinners", [0, 2], ids=["alone", "cpu-shared-with-2-busy-loops"])
async def test_a_burst_of_ten_thousand_reads_degrades_instead_of_collapsing(
    server: RedisServer, spinners: int, tmp_path: Path
) -> None:
    config = sessions(secret_key=SECRET, redis_url=server.url, key_prefix=new_prefix())
    app = config(asgi_app)
    devices = [await Device.login(app, f"burst-{i}") for i in range(USERS)]
    client = config.redis.async_()
    assert isinstance(client, MultiplexedRedis)
    admin = server.client()
    opened = int(admin.info("stats")["total_connections_received"])
    with busy_processes(spinners, tmp_path):
        replies = await asyncio.wait_for(
            asyncio.gather(*(call(app, "/read", devices[i % USERS].cookie) for i in range(BURST))),
            TEST_BOUND,
        )
    statuses = [status for status, _, _ in replies]
    assert set(statuses) <= {200, 503}
    for index, (status, body, _) in enumerate(replies):
        if status == 200:
            assert body["user"] == devices[index % USERS].user
    assert statuses.count(503) <= BURST // 100, "at most 1% refused"
    assert client.connections_opened == 1, "the shared connection was never reset"
    assert int(admin.info("stats")["total_connections_received"]) == opened
    admin.close()
    await config.aclose()


async def test_connections_killed_by_redis_cost_no_read(server: RedisServer) -> None:
    config = sessions(secret_key=SECRET, redis_url=server.url, key_prefix=new_prefix())
    app = config(asgi_app)
    devices = [await Device.login(app, f"kill-{i}") for i in range(DEVICES)]
    writers = devices[::3]  # every third device writes, the others read
    client = config.redis.async_()
    assert isinstance(client, MultiplexedRedis)
    reads: list[int] = []
    done = [0] * DEVICES  # requests each device completed
    stop = asyncio.Event()

    async def browse(index: int, device: Device) -> None:
        while not stop.is_set():
            if device in writers:
                await device.write(app)
            else:
                status, body, _ = await call(app, "/read", device.cookie)
                assert status in (200, 503)
                if status == 200:
                    assert body["user"] == device.user
                reads.append(status)
            done[index] += 1
            await asyncio.sleep(0)

    load = asyncio.ensure_future(
        asyncio.gather(*(browse(i, device) for i, device in enumerate(devices)))
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TEST_BOUND
    with server.client() as admin:
        for _ in range(KILLS):
            before = list(done)
            killed = admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            assert int(killed) >= 1
            # Every device went through a request begun after the kill before the next:
            # a read caught by this kill meets no other.
            while any(now <= then + 1 for now, then in zip(done, before, strict=True)):
                assert loop.time() < deadline and not load.done()
                await asyncio.sleep(0.001)
    stop.set()
    await asyncio.wait_for(load, TEST_BOUND)
    assert client.connections_opened > KILLS // 2, "the kills reached the app's connection"
    assert reads.count(503) == 0 and len(reads) > KILLS * 10
    for device in writers:
        await device.check_kept(app)
    await config.aclose()


@pytest.fixture
async def durable_app() -> AsyncIterator[tuple[RedisServer, Any, MultiplexedRedis]]:
    group, durable = standalone(["--appendonly", "yes", "--appendfsync", "always"])
    config = sessions(
        secret_key=SECRET, redis_url=durable.url, redis_timeout=2.0, key_prefix=new_prefix()
    )
    client = config.redis.async_()
    assert isinstance(client, MultiplexedRedis)
    try:
        yield durable, config(asgi_app), client
    finally:
        await config.aclose()
        group.stop()


async def test_after_a_restart_the_first_request_reconnects_at_once(
    durable_app: tuple[RedisServer, Any, MultiplexedRedis],
) -> None:
    durable, app, client = durable_app
    devices = [await Device.login(app, f"restart-{i}") for i in range(12)]
    durable.kill()

    async def in_the_outage(device: Device) -> list[int]:
        statuses = []
        for _ in range(8):  # enough failed attempts for any backoff to reach its longest
            statuses.append((await call(app, "/read", device.cookie))[0])
            await asyncio.sleep(0.1)
        return statuses

    outage = await asyncio.wait_for(
        asyncio.gather(*(in_the_outage(device) for device in devices)), TEST_BOUND
    )
    assert {status for statuses in outage for status in statuses} == {503}
    await asyncio.to_thread(durable.start)  # returns once Redis answers PING
    await asyncio.sleep(2 * multiplexed.RECONNECT_FLOOR)  # no attempt is that recent

    first = asyncio.ensure_future(call(app, "/read", devices[0].cookie))
    for _ in range(20):  # a few turns of the loop: no timer can have fired
        await asyncio.sleep(0)
    with durable.client() as witness:  # a connection opened after those turns
        witness_id = int(witness.execute_command("CLIENT", "ID"))
        status, body, _ = await asyncio.wait_for(first, TEST_BOUND)
        assert status == 200 and body["user"] == devices[0].user
        app_id = int(await client.execute_command("CLIENT", "ID"))
    assert app_id < witness_id, "the request connected at once, not after a backoff"

    # Every device is served on its first request, none waits or gets the 503.
    statuses = await asyncio.wait_for(
        asyncio.gather(*(device.write(app) for device in devices)), TEST_BOUND
    )
    assert statuses == [200] * len(devices)
    assert client.connections_opened == 2


def multiplexed_of(clients: RedisClients) -> MultiplexedRedis:
    client = clients.async_()
    assert isinstance(client, MultiplexedRedis)
    return client


async def test_a_late_event_loop_is_not_a_dead_redis(server: RedisServer) -> None:
    clients = RedisClients(url=server.url, client=None, timeout=0.2)
    client = multiplexed_of(clients)
    value = b"v" * 1000  # 2 MB of replies: more than the loop reads from a socket at once
    await client.execute_command("SET", "late", value)
    reads = [asyncio.ensure_future(client.run([("GET", "late")])) for _ in range(2000)]
    for _ in range(3):  # the reads are written
        await asyncio.sleep(0)
    time.sleep(1.0)  # the loop is held five deadlines long; Redis answers meanwhile
    replies = await asyncio.wait_for(asyncio.gather(*reads), TEST_BOUND)
    assert replies == [[value]] * 2000, "the replies that came are delivered"
    assert client.connections_opened == 1
    await clients.aclose()


async def test_a_deadline_fails_its_own_request_not_the_connection(server: RedisServer) -> None:
    clients = RedisClients(url=server.url, client=None, timeout=1.0)
    client = multiplexed_of(clients)
    await client.execute_command("SET", "slow", "v")
    # Blocking pops hold this connection alone: Redis answers the first after 0.25 s (so
    # it is never silent for the whole 1 s), the second 1.5 s later, past its deadline and
    # past that of the GET behind it.
    first = asyncio.ensure_future(client.run([("BLPOP", "nothing", "0.25")]))
    second = asyncio.ensure_future(client.run([("BLPOP", "nothing", "1.5")]))
    behind = asyncio.ensure_future(client.run([("GET", "slow")]))
    outcomes = await asyncio.wait_for(
        asyncio.gather(first, second, behind, return_exceptions=True), TEST_BOUND
    )
    assert outcomes[0] == [None]
    assert isinstance(outcomes[1], redis.TimeoutError)
    assert isinstance(outcomes[2], redis.TimeoutError)
    # The connection stays: their replies are read and dropped, the next request served.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TEST_BOUND
    while client.in_flight:
        assert loop.time() < deadline, "the late replies never came"
        await asyncio.sleep(0.01)
    assert await asyncio.wait_for(client.run([("GET", "slow")]), TEST_BOUND) == [b"v"]
    assert client.connections_opened == 1
    await clients.aclose()


async def test_a_command_never_written_is_sent_again_and_a_written_write_is_not(
    server: RedisServer,
) -> None:
    clients = RedisClients(url=server.url, client=None, timeout=5.0)
    client = multiplexed_of(clients)
    await client.execute_command("SET", "n", "0")
    written = asyncio.ensure_future(client.run([("INCR", "n")]))  # written at once
    buffered = asyncio.ensure_future(client.run([("INCR", "n")]))  # with this turn's others
    await asyncio.sleep(0)  # both issued; the second waits for the end of the loop turn
    wire = client._wire
    assert wire is not None
    wire.fail(redis.ConnectionError("the connection is closed"))  # as a moved master is
    outcomes = await asyncio.wait_for(
        asyncio.gather(written, buffered, return_exceptions=True), TEST_BOUND
    )
    assert isinstance(outcomes[0], redis.ConnectionError), "it may have been applied"
    assert outcomes[1] in ([1], [2]), "sent again, once, on a new connection"
    assert client.connections_opened == 2
    await clients.aclose()
