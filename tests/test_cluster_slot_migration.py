"""A slot migration under load is invisible: while slots holding sessions move between
masters (keys MIGRATEd one at a time, so each slot spends a while half-moved), users of
those slots and of others keep logging in, writing and reading, through the ASGI app
(asyncio tasks) and the WSGI app (threads), and every answer is a 200 for the right user.

A command a half-moved slot refuses (ASK, TRYAGAIN: a login's new record cannot be
written until its slot has moved) is sent again within `redis_timeout`
(_transport/cluster_clients.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from .support.cluster_load import Load, load_config
from .support.load_app import starlette_app, wsgi_app
from .support.redis_servers import ClusterServers
from .support.stories import browsers_for

SLOTS_MOVED = 10
# Long enough to hold each slot half-moved while requests come in.
PAUSE_PER_KEY = 0.05


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterServers]:
    with ClusterServers(masters=3, replicas=0).running() as servers:
        yield servers


@pytest.mark.anyio
async def test_a_slot_migration_under_load_is_invisible(cluster: ClusterServers) -> None:
    # Each answer may take 3 s (the retries of a refused command too): a reply slower than
    # that on a loaded machine, or one never given, fails the test and names the request.
    config = load_config(cluster.url, redis_timeout=3.0)
    users = [f"mover-{n}" for n in range(24)]
    slots = sorted({cluster.slot_of(config.keys.epoch_key(config.keys.user_tag(u))) for u in users})
    load = Load(starlette_app(config), wsgi_app(config), users[:16], users[16:], login_every=3)
    await load.signed_in(times=2)  # every user is logged in, with a few sessions
    # From here on, the test's own calls to Redis are made from a thread: made from this
    # event loop, they would hold up the ASGI users' requests for as long as they take.
    before = await asyncio.to_thread(_refusals, cluster)
    moved = 0
    for slot in slots[:SLOTS_MOVED]:
        moved += await asyncio.to_thread(_move_elsewhere, cluster, slot)
    tally = await load.stop()

    assert moved >= SLOTS_MOVED  # every slot held keys while it moved
    assert _refusals(cluster) > before  # the clients were refused mid-move...
    assert tally.statuses[200] > 0
    assert tally.failed() == 0, (tally.first_wrong, cluster.slow_events())  # ...and no user saw it
    assert sum(tally.wrong_users.values()) == 0, tally
    assert tally.lost() == 0
    config.redis.close()


@pytest.mark.anyio
async def test_a_slot_stuck_half_moved_answers_503_once_the_retries_are_spent(
    cluster: ClusterServers,
) -> None:
    """A sign-in into a slot whose move stopped half-way can never be written: it is
    retried for `redis_timeout`, then answered with the 503, never a 500 or a hang."""
    config = load_config(cluster.url)
    user = "stuck"
    slot = cluster.slot_of(config.keys.epoch_key(config.keys.user_tag(user)))
    source = cluster.master_of_slot(slot)
    target = next(server for server in cluster.live() if server is not source)
    before = _refusals(cluster)
    with cluster.stuck_moving(slot, target):
        for face in ("asgi", "wsgi"):
            browser = browsers_for(config, face)()
            status, _ = await browser.call("POST", f"/login?user={user}")
            await browser.close()
            assert status == 503, face
    assert _refusals(cluster) - before > 2  # sent again, more than once per sign-in
    browser = browsers_for(config, "asgi")()
    assert (await browser.ok("POST", f"/login?user={user}"))["user"] == user
    await browser.close()
    config.redis.close()
    await config.redis.aclose()


def _move_elsewhere(cluster: ClusterServers, slot: int) -> int:
    """Move `slot` to another master, slowly; returns how many keys moved."""
    source = cluster.master_of_slot(slot)
    target = next(server for server in cluster.live() if server is not source)
    return cluster.migrate_slot(slot, target, PAUSE_PER_KEY)


def _refusals(cluster: ClusterServers) -> int:
    """ASK and TRYAGAIN answers given so far, summed over the masters."""
    total = 0
    for server in cluster.live():
        with server.client(decode_responses=True) as client:
            stats = client.info("errorstats")
        total += sum(
            int(stats.get(f"errorstat_{name}", {}).get("count", 0)) for name in ("ASK", "TRYAGAIN")
        )
    return total
