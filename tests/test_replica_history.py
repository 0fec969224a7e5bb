"""What a process knows about the master's replicas comes from Redis, not its memory.

- A cold process (a fresh configuration: a new worker, a cron job, the CLI) invalidates
  users while the only replica is cut off, then the master is killed and Sentinel
  promotes the replica: every invalidation that returned still holds, as it does for a
  long-running worker (tests/test_sentinel_lagging_replica.py).
- A single Redis that never had a replica hangs: invalidate_user raises after one
  redis_timeout, not after invalidate_deadline (no failover can come to its rescue).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from session_middleware import InvalidationUncertain, NotReplicated, StoreUnavailable, sessions
from session_middleware._redis.replication import REPLICATED_HISTORIES

from .support import SECRET, new_prefix
from .support.cluster_load import Load, invalidate_all, load_config
from .support.load_app import starlette_app, wsgi_app
from .support.redis_servers import RedisServer, SentinelServers, standalone
from .support.stories import browsers_for

INVALIDATED = 10
PROMOTION_DEADLINE = 20.0
# invalidate_user must give up long before this; the test waits no longer for it.
HUNG_DEADLINE = 300.0
WAIT_FOR_RAISE = 30.0


@pytest.fixture
def group() -> Iterator[SentinelServers]:
    with SentinelServers("cold", down_after_ms=1000).running() as servers:
        yield servers


@pytest.mark.anyio
async def test_a_cold_process_loses_no_invalidation_in_a_failover(group: SentinelServers) -> None:
    app = load_config(group.url)
    targets = [f"target-{n}" for n in range(INVALIDATED)]
    devices = {user: browsers_for(app, "asgi")() for user in targets}
    for user, device in devices.items():
        await device.ok("POST", f"/login?user={user}")
    group.wait_replicated()
    walkers = [f"walker-{n}" for n in range(8)]
    load = Load(starlette_app(app), wsgi_app(app), walkers[:6], walkers[6:])
    await asyncio.sleep(0.3)  # the walkers signed in, and the replica has it all:
    with group.master.client() as client, client.pipeline(transaction=False) as pipe:
        pipe.set(f"{app.keys.prefix}sync", "1", px=60_000).wait(1, 5000)
        assert pipe.execute()[-1] == 1

    old_master, replica = group.master, group.replica
    with old_master.client(decode_responses=True) as client:
        history = client.info("replication")["master_replid"]
    assert history not in REPLICATED_HISTORIES  # nothing in this process saw it waited on
    replica.pause()
    with old_master.client() as client:
        client.execute_command("CLIENT", "KILL", "TYPE", "replica")
    # A process that starts now: a configuration of its own, no client used yet.
    cold = sessions(
        secret_key=SECRET, redis_url=group.url, key_prefix=app.keys.prefix, redis_timeout=1.0
    )
    invalidations = invalidate_all(cold, targets)
    await asyncio.sleep(0.3)  # the new epochs are on the master alone
    old_master.kill()
    replica.resume()
    outcomes = await asyncio.gather(*invalidations, return_exceptions=True)
    deadline = time.monotonic() + PROMOTION_DEADLINE
    while group.current_master() is not replica:
        assert time.monotonic() < deadline, "Sentinel did not promote the replica"
        await asyncio.sleep(0.1)
    tally = await load.stop()

    assert all(o is None or isinstance(o, (NotReplicated, StoreUnavailable)) for o in outcomes)
    acknowledged = [u for u, outcome in zip(targets, outcomes, strict=True) if outcome is None]
    lost = []
    for user in acknowledged:
        for _ in range(100):  # the app's connections move to the new master
            status, body = await devices[user].call("GET", "/me")
            if status == 200:
                break
            await asyncio.sleep(0.05)
        assert status == 200
        assert body is not None
        if body["user"] is not None:
            lost.append(user)
    print(f"\ncold process: {len(acknowledged)} of {INVALIDATED} acknowledged, lost {lost}")
    assert acknowledged  # the retries outlast the failover
    assert lost == []
    assert set(tally.statuses) <= {200, 503}
    assert sum(tally.wrong_users.values()) == 0, tally.wrong_users
    for device in devices.values():
        await device.close()
    for config in (app, cold):
        config.redis.close()
        await config.redis.aclose()


@pytest.fixture
def lone_redis() -> Iterator[RedisServer]:
    servers, server = standalone()
    try:
        yield server
    finally:
        servers.stop()


@pytest.mark.anyio
async def test_a_hung_single_redis_fails_invalidate_user_after_one_timeout(
    lone_redis: RedisServer,
) -> None:
    config = sessions(
        secret_key=SECRET,
        redis_url=lone_redis.url,
        key_prefix=new_prefix(),
        redis_timeout=0.5,
        invalidate_deadline=HUNG_DEADLINE,
    )
    browser = browsers_for(config, "asgi")()
    await browser.ok("POST", "/login?user=alice")
    lone_redis.pause()
    try:
        raised: list[BaseException] = []
        took: list[float] = []

        def invalidate() -> None:
            start = time.monotonic()
            try:
                config.invalidate_user("alice")
            except BaseException as error:
                raised.append(error)
            took.append(time.monotonic() - start)

        thread = threading.Thread(target=invalidate, daemon=True)
        thread.start()
        await asyncio.to_thread(thread.join, WAIT_FOR_RAISE)
        assert not thread.is_alive(), "invalidate_user still waits on a hung Redis"
        start = time.monotonic()
        with pytest.raises(InvalidationUncertain):
            await asyncio.wait_for(config.ainvalidate_user("alice"), WAIT_FOR_RAISE)
        took.append(time.monotonic() - start)
        assert len(raised) == 1 and isinstance(raised[0], InvalidationUncertain)
        print(f"\nhung single Redis, redis_timeout 0.5: raised after {took} s")
    finally:
        lone_redis.resume()
    await browser.close()
    config.redis.close()
    await config.redis.aclose()
