"""A failover onto a replica that lagged: the replica is cut off (frozen, its link closed)
while users are invalidated, the master is killed, and Sentinel promotes the replica,
which never got those invalidations. With the default settings every invalidation that
returned still holds, under load, with no 500 and no user seeing another user's session.

invalidate_user waits until a replica has the new epoch (invalidate_wait_replicas=1 by
default); an attempt that fails is made again on the master Sentinel names next, until
one is acknowledged or invalidate_deadline passes (_transport/replication.py).

A cold process (a fresh configuration: a new worker, a cron job, the CLI) gets the same
guarantee: what it knows of the master's replicas comes from the master, not its memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from session_middleware import NotReplicated, StoreUnavailable, sessions
from session_middleware._transport.replication import REPLICATED_HISTORIES

from .support import SECRET
from .support.cluster_load import Load, invalidate_all, load_config
from .support.load_app import starlette_app, wsgi_app
from .support.redis_servers import SentinelServers
from .support.stories import Browser, browsers_for
from .support.waiting import until

INVALIDATED = 12
PROMOTION_DEADLINE = 20.0


@pytest.fixture
def group() -> Iterator[SentinelServers]:
    with SentinelServers("lagging", down_after_ms=1000).running() as servers:
        yield servers


@pytest.mark.anyio
@pytest.mark.parametrize("process", ["warm", "cold"])
async def test_invalidations_survive_a_failover_onto_a_lagging_replica(
    group: SentinelServers, process: str
) -> None:
    """`warm`: the process invalidating has seen the master's replica before; `cold`: a
    process that starts once the replica is cut off, and never saw it."""
    config = load_config(group.url)
    targets = [f"target-{n}" for n in range(INVALIDATED)]
    browsers = browsers_for(config, "asgi")
    devices = {user: browsers() for user in targets}
    for user, device in devices.items():
        await device.ok("POST", f"/login?user={user}")
    if process == "warm":
        await config.ainvalidate_user("someone")
    walkers = [f"walker-{n}" for n in range(12)]
    load = Load(starlette_app(config), wsgi_app(config), walkers[:8], walkers[8:])
    await load.signed_in()  # the walkers signed in, and the replica has it all:
    with group.master.client() as client, client.pipeline(transaction=False) as pipe:
        pipe.set(f"{config.keys.prefix}sync", "1", px=60_000).wait(1, 5000)
        assert pipe.execute()[-1] == 1

    old_master, replica = group.master, group.replica
    replica.pause()
    with old_master.client() as client:
        client.execute_command("CLIENT", "KILL", "TYPE", "replica")
    invalidator = config
    if process == "cold":
        with old_master.client(decode_responses=True) as client:
            assert client.info("replication")["master_replid"] not in REPLICATED_HISTORIES
        invalidator = sessions(
            secret_key=SECRET, redis_url=group.url, key_prefix=config.keys.prefix, redis_timeout=1.0
        )
    epoch_keys = [config.keys.epoch_key(config.keys.user_tag(user)) for user in targets]
    with old_master.client() as client:
        before = client.mget(epoch_keys)
        invalidations = invalidate_all(invalidator, targets)
        await until(
            lambda: all(a != b for a, b in zip(client.mget(epoch_keys), before, strict=True)),
            "the new epochs on the master (alone)",
        )
    old_master.kill()
    replica.resume()
    outcomes = await asyncio.gather(*invalidations, return_exceptions=True)
    deadline = time.monotonic() + PROMOTION_DEADLINE
    while group.current_master() is not replica:
        assert time.monotonic() < deadline, "Sentinel did not promote the replica"
        await asyncio.sleep(0.1)
    tally = await load.stop()

    failures = (NotReplicated, StoreUnavailable)
    assert all(outcome is None or isinstance(outcome, failures) for outcome in outcomes)
    acknowledged = [u for u, outcome in zip(targets, outcomes, strict=True) if outcome is None]
    assert acknowledged  # the retries outlast the failover
    lost = [u for u in acknowledged if (await _read(devices[u]))["user"] is not None]
    print(f"\n{process} process: {len(acknowledged)} of {INVALIDATED} acknowledged, lost {lost}")
    assert lost == []
    assert set(tally.statuses) <= {200, 503}  # never a 500
    assert tally.statuses[200] > 0
    assert sum(tally.wrong_users.values()) == 0, tally.wrong_users
    for device in devices.values():
        await device.close()
    for each in {id(config): config, id(invalidator): invalidator}.values():
        each.redis.close()
        await each.redis.aclose()


async def _read(device: Browser) -> dict[str, Any]:
    """The session, once the app's connections reached the new master."""
    for _ in range(100):
        status, body = await device.call("GET", "/me")
        if status == 200 and body is not None:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError("the session could not be read on the new master")
