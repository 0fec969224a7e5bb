"""redis_max_connections bounds the pools of clients built from a URL. A request that
finds every connection busy waits at most redis_timeout for one, then gets the 503:
never a 500, never a wait without end."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from session_middleware import ConfigurationError, sessions
from session_middleware._transport.clients import RedisClients

from .support import SECRET
from .support.apps import asgi_app
from .support.redis_servers import RedisServer, server
from .support.waiting import until

__all__ = ["server"]  # the fixture

pytestmark = pytest.mark.anyio

POOL = 2
TIMEOUT = 1.0
# A bound on any one burst in the test, far above what the behaviour under test needs
# (the frozen burst needs two redis_timeouts): a hang fails the test instead of blocking.
BURST_BOUND = 30.0


async def _burst(client: httpx.AsyncClient, count: int) -> Counter[int]:
    responses = await asyncio.wait_for(
        asyncio.gather(*(client.get("/read") for _ in range(count))), BURST_BOUND
    )
    return Counter(response.status_code for response in responses)


def _app_connections(server: RedisServer) -> int:
    with server.client() as admin:
        return int(admin.info("clients")["connected_clients"]) - 1  # not this one


async def test_a_tiny_pool_serves_bursts_and_answers_503_while_redis_hangs(
    server: RedisServer,
) -> None:
    config = sessions(
        secret_key=SECRET,
        redis_url=server.url,
        redis_max_connections=POOL,
        redis_timeout=TIMEOUT,
        redis_multiplex=False,
    )
    transport = httpx.ASGITransport(app=config(asgi_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        created = await client.get("/set", params={"key": "cart", "value": "1"})
        assert created.status_code == 200
        seen: Counter[int] = Counter()

        # Redis healthy: 40 requests at once on 2 connections all wait their turn (they
        # need ~30 ms here; each may wait a whole redis_timeout).
        healthy = await _burst(client, 40)
        seen += healthy
        assert healthy == {200: 40}
        assert _app_connections(server) <= POOL

        # Redis hung: the requests holding the 2 connections time out, the others wait
        # for a connection no longer than redis_timeout; every one gets the 503.
        server.pause()
        try:
            frozen = await _burst(client, 20)
        finally:
            server.resume()
        seen += frozen
        assert frozen == {503: 20}

        # Redis back: served again, from the same bounded pool.
        deadline = time.monotonic() + 10
        while True:
            after = await _burst(client, 20)
            seen += after
            if after == {200: 20} or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert after == {200: 20}
        assert _app_connections(server) <= POOL
        assert set(seen) == {200, 503}  # no 500, ever
    await config.aclose()


def test_the_setting_sizes_every_pool_built_from_a_url(server: RedisServer) -> None:
    config = sessions(
        secret_key=SECRET, redis_url=server.url, redis_max_connections=3, redis_multiplex=False
    )
    assert config.redis.sync().connection_pool.max_connections == 3

    async def async_pool_size(clients: RedisClients) -> int:
        size = clients.async_().connection_pool.max_connections
        await clients.aclose()
        return int(size)

    assert asyncio.run(async_pool_size(config.redis)) == 3
    # The URL's own option wins, as every query option does.
    own = RedisClients(
        url=server.url + "?max_connections=5", client=None, timeout=1.0, multiplex=False
    )
    assert own.sync().connection_pool.max_connections == 5
    assert asyncio.run(async_pool_size(own)) == 5
    # Sentinel: the master's pool (nothing is contacted until a command runs).
    sentinel = RedisClients(
        url="redis+sentinel://127.0.0.1:1/mymaster",
        client=None,
        timeout=1.0,
        max_connections=4,
        multiplex=False,
    )
    assert sentinel.sync().connection_pool.max_connections == 4
    assert asyncio.run(async_pool_size(sentinel)) == 4
    # Cluster (async): per node.
    cluster = RedisClients(
        url="redis+cluster://127.0.0.1:1", client=None, timeout=1.0, max_connections=6
    )

    async def cluster_pool_size() -> int:
        return int(cluster.async_().nodes_manager.connection_kwargs["max_connections"])

    assert asyncio.run(cluster_pool_size()) == 6
    config.close()


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "10"])
def test_a_pool_size_that_cannot_work_is_refused(size: object) -> None:
    with pytest.raises(ConfigurationError, match="redis_max_connections"):
        sessions(secret_key=SECRET, redis_max_connections=size)  # type: ignore[arg-type]


async def test_a_wake_up_lost_to_a_cancelled_request_goes_to_the_next(
    server: RedisServer,
) -> None:
    # The third request may wait a minute; it must get the connection long before.
    clients = RedisClients(
        url=server.url, client=None, timeout=60.0, max_connections=1, multiplex=False
    )
    pool = clients.async_().connection_pool
    held = await pool.get_connection()
    second = asyncio.ensure_future(pool.get_connection())
    third = asyncio.ensure_future(pool.get_connection())
    await until(lambda: len(pool._waiters) == 2, "both to wait: the pool is full")
    await pool.release(held)  # wakes the second...
    second.cancel()  # ...which is cancelled before it runs (a client went away)
    with pytest.raises(asyncio.CancelledError):
        await second
    connection = await asyncio.wait_for(third, 5.0)
    await pool.release(connection)
    await clients.aclose()
