"""With `redis_multiplex` on, the local cache's misses and writes go on one multiplexed
connection that tracks for its listener, not on a pool of connections."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from session_middleware import sessions

from .support import SECRET
from .support.http import asgi_client
from .support.local_cache import cache_of, ready, wait_until
from .support.redis_servers import RedisServer, server

__all__ = ["server"]  # the fixture

pytestmark = pytest.mark.anyio

CLIENTS = 16


def tracking_clients(admin: Any) -> list[dict[str, Any]]:
    return [c for c in admin.client_list() if "t" in c["flags"]]


async def test_concurrent_cached_writes_share_one_tracking_connection(
    server: RedisServer, key_prefix: str
) -> None:
    config = sessions(
        secret_key=SECRET, redis_url=server.url, key_prefix=key_prefix, local_cache=1000
    )
    cache = await ready(config)
    users = [asgi_client(config) for _ in range(CLIENTS)]
    with server.client(decode_responses=True) as admin:
        opened_before = int(admin.info("stats")["total_connections_received"])
        try:
            for number, user in enumerate(users):
                await user.get(f"/login?user=u{number}")
            for round_ in range(3):  # every write misses the cache and reads its record back
                writes = [user.get(f"/set?key=n&value={round_}") for user in users]
                assert all(r.status_code == 200 for r in await asyncio.gather(*writes))
                reads = await asyncio.gather(*(user.get("/read") for user in users))
                assert {r.json()["data"]["n"] for r in reads} == {str(round_)}
            # The listener's first check that the tracking connection is alive opens its side
            # connection: wait for a check made after the traffic, however long it took.
            traffic_done = time.monotonic()
            await wait_until(lambda: cache.proven_at > traffic_done)
            opened = int(admin.info("stats")["total_connections_received"]) - opened_before
            tracking = tracking_clients(admin)
        finally:
            for user in users:
                await user.aclose()
            await cache_of(config).aclose()
    assert len(tracking) == 1, tracking
    assert int(tracking[0]["redir"]) == cache.listener_id
    assert opened == 2, "every request went on the cache's one connection (+ the listener's check)"
