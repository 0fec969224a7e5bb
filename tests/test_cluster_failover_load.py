"""A master failover under load: while one master is killed and its replica takes over,
the users whose sessions live on the other masters see no error at all, those on the
failed master see only the 503 until the failover ends, nobody ever sees a 500 or another
user's session, and every invalidation that returned (with the default settings) holds.

The apps start cold, as after a deploy: redis-py's async cluster client, when its first
commands run concurrently, fails some of them and is left in a state where the failover
fails requests on healthy masters too; the clients here read the cluster's layout before
their first command (_transport/cluster_clients.py).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator

import pytest
from redis.crc import key_slot

from session_middleware import SessionConfig, StoreUnavailable

from .support.cluster_load import Load, invalidate_all, load_config
from .support.load_app import starlette_app, wsgi_app
from .support.redis_servers import ClusterServers
from .support.stories import Browser, browsers_for

INVALIDATED = 6
FOLLOW_DEADLINE = 10.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterServers]:
    with ClusterServers(masters=3, replicas=1, node_timeout_ms=1000).running() as servers:
        yield servers


def _masters_of_users(cluster: ClusterServers, config: SessionConfig) -> Callable[[str], int]:
    """A function giving the port of the master that serves a user's keys now."""
    with cluster.live()[0].client() as client:
        ranges = [(s, e, int(m[1])) for s, e, m, *_ in client.execute_command("CLUSTER", "SLOTS")]

    def master_port(user: str) -> int:
        slot = key_slot(config.keys.epoch_key(config.keys.user_tag(user)).encode())
        return next(port for start, end, port in ranges if start <= slot <= end)

    return master_port


async def _until_served(browser: Browser, user: str) -> None:
    """Until the app serves `user`, whose keys were on the killed master: redis-py's cluster
    client reads the slot map again at most once a second after an error (8.2), so it may
    find the promoted replica up to a second after the cluster itself is healthy."""
    deadline = time.monotonic() + FOLLOW_DEADLINE
    while (await browser.call("POST", f"/login?user={user}"))[0] != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the app still fails {user} {FOLLOW_DEADLINE} s after the failover")
        await asyncio.sleep(0.05)


@pytest.mark.anyio
async def test_a_master_failover_under_load_touches_only_its_own_users(
    cluster: ClusterServers,
) -> None:
    config = load_config(cluster.url)
    users = [f"walker-{n}" for n in range(24)]
    master_port = _masters_of_users(cluster, config)
    victim = next(server for server in cluster.servers if server.port == master_port(users[0]))
    healthy = [u for u in users if master_port(u) != victim.port]
    names = (f"target-{n}" for n in itertools.count())
    on_victim = (u for u in names if master_port(u) == victim.port)
    targets = list(itertools.islice(on_victim, INVALIDATED))
    load = Load(starlette_app(config), wsgi_app(config), users[:16], users[16:])  # cold
    browsers = browsers_for(config, "asgi")
    devices = {user: browsers() for user in targets}
    for user, device in devices.items():
        await device.ok("POST", f"/login?user={user}")
    await load.signed_in()
    invalidations = invalidate_all(config, targets)
    victim.kill()
    await asyncio.to_thread(cluster.wait_healthy)
    probe = browsers()
    await _until_served(probe, next(on_victim))  # every user is served again
    await probe.close()
    tally = await load.stop()
    outcomes = await asyncio.gather(*invalidations, return_exceptions=True)

    assert len(healthy) >= 8 and len(healthy) < len(users)
    assert tally.statuses[200] > 0
    assert set(tally.statuses) <= {200, 503}  # never a 500
    assert tally.failed(healthy) == 0, tally.failures  # the other masters' users saw nothing
    assert tally.lost(healthy) == 0
    assert sum(tally.wrong_users.values()) == 0, tally.wrong_users
    acknowledged = [u for u, outcome in zip(targets, outcomes, strict=True) if outcome is None]
    assert all(outcome is None or isinstance(outcome, StoreUnavailable) for outcome in outcomes), (
        outcomes
    )
    assert acknowledged  # the retries outlast the failover
    for user in acknowledged:  # none of the invalidations that returned was lost
        assert (await devices[user].ok("GET", "/me"))["user"] is None
    for device in devices.values():
        await device.close()
    config.redis.close()
    await config.redis.aclose()
