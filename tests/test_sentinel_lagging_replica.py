"""A failover onto a replica that lagged: the replica is cut off (frozen, its link closed)
while users are invalidated, the master is killed, and Sentinel promotes the replica,
which never got those invalidations. With the default settings every invalidation that
returned still holds, under load, with no 500 and no user seeing another user's session.

invalidate_user waits until a replica has the new epoch (invalidate_wait_replicas=1 by
default); an attempt that fails is made again on the master Sentinel names next, until
one is acknowledged or invalidate_deadline passes (_redis/replication.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from session_middleware import NotReplicated, StoreUnavailable

from .support.cluster_load import Load, invalidate_all, load_config
from .support.load_app import starlette_app, wsgi_app
from .support.redis_servers import SentinelServers
from .support.stories import browsers_for

INVALIDATED = 12
PROMOTION_DEADLINE = 20.0


@pytest.fixture
def group() -> Iterator[SentinelServers]:
    with SentinelServers("lagging", down_after_ms=1000).running() as servers:
        yield servers


@pytest.mark.anyio
async def test_invalidations_survive_a_failover_onto_a_lagging_replica(
    group: SentinelServers,
) -> None:
    config = load_config(group.url)
    targets = [f"target-{n}" for n in range(INVALIDATED)]
    browsers = browsers_for(config, "asgi")
    devices = {user: browsers() for user in targets}
    for user, device in devices.items():
        await device.ok("POST", f"/login?user={user}")
    await config.ainvalidate_user("someone")  # this process has seen the master's replica
    group.wait_replicated()  # the logins are on the replica; what follows is not
    walkers = [f"walker-{n}" for n in range(12)]
    load = Load(starlette_app(config), wsgi_app(config), walkers[:8], walkers[8:])
    await asyncio.sleep(0.3)

    old_master, replica = group.master, group.replica
    replica.pause()
    with old_master.client() as client:
        client.execute_command("CLIENT", "KILL", "TYPE", "replica")
    invalidations = invalidate_all(config, targets)
    await asyncio.sleep(0.3)  # the new epochs are on the master alone
    old_master.kill()
    replica.resume()
    outcomes = await asyncio.gather(*invalidations, return_exceptions=True)
    deadline = time.monotonic() + PROMOTION_DEADLINE
    while group.current_master() is not replica:
        assert time.monotonic() < deadline, "Sentinel did not promote the replica"
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # the apps follow the new master
    tally = await load.stop()

    failures = (NotReplicated, StoreUnavailable)
    assert all(outcome is None or isinstance(outcome, failures) for outcome in outcomes)
    acknowledged = [u for u, outcome in zip(targets, outcomes, strict=True) if outcome is None]
    assert acknowledged  # the retries outlast the failover
    lost = [u for u in acknowledged if (await devices[u].ok("GET", "/me"))["user"] is not None]
    assert lost == []
    assert set(tally.statuses) <= {200, 503}  # never a 500
    assert tally.statuses[200] > 0
    assert sum(tally.wrong_users.values()) == 0, tally.wrong_users
    for device in devices.values():
        await device.close()
    config.redis.close()
    await config.redis.aclose()
