"""A cold start on a healthy cluster: many users logging in at once on a client that has
never run a command get a 200 each, for themselves, never a 500 or a 503.

redis-py 8.1's async cluster client fails some of many concurrent first commands
(AttributeError: 'NoneType' object has no attribute 'writelines'); the clients here read
the cluster's layout before serving: at the ASGI lifespan start-up, or behind a first-use
lock (_transport/cluster_clients.py, asgi.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis.asyncio.cluster

from session_middleware import SessionConfig

from .support.cluster_load import load_config
from .support.load_app import starlette_app, wsgi_app
from .support.redis_servers import HOST, ClusterServers
from .support.stories import BASE

USERS = 34
FRESH_STARTS = 3


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterServers]:
    with ClusterServers(masters=3, replicas=0).running() as servers:
        yield servers


def _config(cluster: ClusterServers, client: Any = None) -> SessionConfig:
    return load_config(None if client is not None else cluster.url, client)


async def _log_in_at_once(app: Any) -> list[tuple[int, str | None, str]]:
    """USERS logins at once through the ASGI app: (status, user seen, user meant) each."""
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)

    async def log_in(user: str) -> tuple[int, str | None, str]:
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            response = await client.post(f"/login?user={user}")
            seen = response.json()["user"] if response.status_code == 200 else None
            return response.status_code, seen, user

    return await asyncio.gather(*(log_in(f"cold-{n}") for n in range(USERS)))


def _assert_all_served(answers: list[tuple[int, str | None, str]]) -> None:
    assert [status for status, _, _ in answers] == [200] * USERS
    assert [seen for _, seen, _ in answers] == [meant for _, _, meant in answers]


@pytest.mark.anyio
async def test_concurrent_first_logins_on_a_cluster_url(cluster: ClusterServers) -> None:
    for _ in range(FRESH_STARTS):
        config = _config(cluster)
        _assert_all_served(await _log_in_at_once(starlette_app(config)))
        await config.redis.aclose()


def test_concurrent_first_logins_on_the_wsgi_face(cluster: ClusterServers) -> None:
    def log_in(app: Any, user: str) -> tuple[int, str | None, str]:
        transport = httpx.WSGITransport(app, raise_app_exceptions=False)
        with httpx.Client(transport=transport, base_url=BASE) as client:
            response = client.post(f"/login?user={user}")
            seen = response.json()["user"] if response.status_code == 200 else None
            return response.status_code, seen, user

    for _ in range(FRESH_STARTS):
        config = _config(cluster)
        app = wsgi_app(config)
        with ThreadPoolExecutor(USERS) as pool:
            users = [f"cold-{n}" for n in range(USERS)]
            answers = list(pool.map(log_in, [app] * USERS, users))
        _assert_all_served(answers)
        config.redis.close()


@pytest.mark.anyio
async def test_concurrent_first_logins_on_a_given_cluster_client(cluster: ClusterServers) -> None:
    for _ in range(FRESH_STARTS):
        client = redis.asyncio.cluster.RedisCluster(host=HOST, port=cluster.servers[0].port)
        _assert_all_served(await _log_in_at_once(starlette_app(_config(cluster, client))))
        await client.aclose()


@pytest.mark.anyio
async def test_the_lifespan_start_up_reads_the_cluster_layout(cluster: ClusterServers) -> None:
    client = redis.asyncio.cluster.RedisCluster(host=HOST, port=cluster.servers[0].port)
    app = starlette_app(_config(cluster, client))
    messages = [{"type": "lifespan.startup"}]
    started = asyncio.Event()
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await started.wait()
        return {"type": "lifespan.shutdown"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])
        if message["type"] == "lifespan.startup.complete":
            assert client.get_default_node() is not None  # the layout was read before
            started.set()

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    await client.aclose()
