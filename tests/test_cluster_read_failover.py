"""The session read on a Redis Cluster (HGETALL and GET in one pipeline) while a master
is down: the reads of that master's users fail or wait as a single command would, and
the async client's connections to the healthy masters stay open. (The sync client's
refresh of the cluster's layout closes idle connections to the node it asks, for a single
command too; the ones in flight finish first.)

redis-py 8.1's async cluster pipeline answered a connection error by closing every
connection of the client, failing the requests in flight to the healthy masters
(_transport/cluster_reads.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from session_middleware import SessionConfig

from .support.cluster_load import load_config
from .support.redis_servers import ClusterServers, RedisServer
from .support.stories import browsers_for


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterServers]:
    with ClusterServers(masters=3, replicas=1, node_timeout_ms=1000).running() as servers:
        yield servers


def _master_of_user(cluster: ClusterServers, config: SessionConfig, user: str) -> RedisServer:
    return cluster.master_of(config.keys.epoch_key(config.keys.user_tag(user)))


def _reading(server: RedisServer) -> set[int]:
    """The ids of the connections to `server` whose last command was the read's GET (the
    client's connections that read the cluster's layout are another node object's, which
    a new layout may replace)."""
    with server.client() as client:
        return {int(c["id"]) for c in client.client_list(_type="normal") if c["cmd"] == "get"}


@pytest.mark.anyio
async def test_a_read_on_a_dead_master_leaves_the_healthy_masters_connections(
    cluster: ClusterServers,
) -> None:
    config = load_config(cluster.url)
    users = (f"reader-{n}" for n in range(1000))
    alice = next(users)
    victim = _master_of_user(cluster, config, alice)
    bob = next(u for u in users if _master_of_user(cluster, config, u) is not victim)
    healthy = _master_of_user(cluster, config, bob)
    browsers = browsers_for(config, "asgi")
    alice_browser, bob_browser = browsers(), browsers()
    await alice_browser.ok("POST", f"/login?user={alice}")
    await bob_browser.ok("POST", f"/login?user={bob}")
    assert (await bob_browser.ok("GET", "/me"))["user"] == bob
    linked = _reading(healthy)  # the app's connections to bob's master, idle now
    assert linked
    cluster.wait_replicated()

    victim.kill()
    for _ in range(3):  # the first read finds its connection dead, the next ones connect
        status, body = await alice_browser.call("GET", "/me")
        assert status == 503 or (body is not None and body["user"] == alice)  # or promoted

    assert linked <= _reading(healthy)  # not one was closed
    assert (await bob_browser.ok("GET", "/me"))["user"] == bob
    await alice_browser.close()
    await bob_browser.close()
    config.redis.close()
    await config.redis.aclose()
    victim.start()
    cluster.wait_healthy()
