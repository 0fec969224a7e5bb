"""A forced Sentinel failover (SENTINEL FAILOVER) under load, in both connection modes.

Users keep adding to their counters (ASGI tasks and WSGI threads) while other users,
each polling their session, are invalidated right as the replica is promoted. The old
master stays up and writable (without min-replicas-to-write) until Sentinel demotes it,
about ten seconds later; the apps must leave it as soon as the failover is known.

- never: a session served by a request that started after its user's invalidate_user
  returned; a 500; another user's session; a write acknowledged by the old master once
  every sentinel names the new one;
- with min-replicas-to-write equal to the replicas (one of one, two of two): no write
  acknowledged after the promotion is lost;
- otherwise the writes lost, and when the 503s came, are printed (docs/deployment.md
  quotes them).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from session_middleware import NotReplicated, SessionConfig, StoreUnavailable, sessions

from .support import SECRET, new_prefix
from .support.redis_servers import RedisServer, SentinelServers
from .support.stories import Browser, browsers_for

# name: (replicas, min-replicas-to-write)
SHAPES = {
    "one-replica": (1, 0),
    "one-replica-min-1": (1, 1),
    "two-replicas-min-1": (2, 1),
    "two-replicas-min-2": (2, 2),
}
ASYNC_WRITERS, SYNC_WRITERS, TARGETS = 10, 4, 8
SWITCH_DEADLINE = 20.0
AFTER_SWITCH = 1.5  # seconds of load once every sentinel names the new master
STEP_DEADLINE = 30.0  # no loop of the test runs longer


@dataclass
class Outcome:
    statuses: dict[int, int] = field(default_factory=dict)
    wrong_users: int = 0
    served_after_invalidation: int = 0
    # When each acknowledged write that a later answer did not see was acknowledged.
    lost_at: list[float] = field(default_factory=list, repr=False)
    refused_at: list[float] = field(default_factory=list, repr=False)  # each 503's time

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 503:
            self.refused_at.append(time.monotonic())

    def lost(self, after: float = 0.0) -> int:
        return sum(1 for acknowledged in self.lost_at if acknowledged > after)


class Writer:
    """One user signing in, then adding to a counter; every acknowledged write (the
    sign-in is count 0) that a later answer does not see is lost."""

    def __init__(self, user: str, browser: Browser, outcome: Outcome, lock: threading.Lock) -> None:
        self.user, self.browser, self.outcome, self.lock = user, browser, outcome, lock
        self.acknowledged: dict[int, float] = {}  # count: when; empty when signed out

    def request(self) -> tuple[str, str]:
        return ("POST", "/hit") if self.acknowledged else ("POST", f"/login?user={self.user}")

    def answer(self, status: int, body: Any, *, wrote: bool = True) -> None:
        with self.lock:
            self.outcome.count(status)
            if status != 200:
                return
            user, count = body.get("user"), body.get("count")
            if user not in (None, self.user):
                self.outcome.wrong_users += 1
            elif user is None:  # the session is gone: everything acknowledged with it
                self._lose(0)
            else:
                # A write acknowledged as `count` replaced what was at `count` and above.
                self._lose(int(count) if wrote else int(count) + 1)
                if wrote:
                    self.acknowledged[int(count)] = time.monotonic()

    def _lose(self, first: int) -> None:
        for count in [c for c in self.acknowledged if c >= first]:
            self.outcome.lost_at.append(self.acknowledged.pop(count))

    async def write(self, stop: threading.Event) -> None:
        while not stop.is_set():
            status, body = await self.browser.call(*self.request())
            self.answer(status, body)
            await asyncio.sleep(0)

    def write_in_thread(self, stop: threading.Event) -> None:
        asyncio.run(self.write(stop))

    async def read_last(self) -> None:
        """Read the counter once more, on the new master: what it lacks was lost."""
        for _ in range(100):
            status, body = await self.browser.call("GET", "/me")
            if status == 200 and body is not None:
                self.answer(status, body, wrote=False)
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.user}'s session could not be read after the failover")


@pytest.fixture(params=list(SHAPES))
def group(request: pytest.FixtureRequest) -> Iterator[SentinelServers]:
    replicas, least = SHAPES[request.param]
    options = ["--min-replicas-to-write", str(least), "--min-replicas-max-lag", "10"]
    servers = SentinelServers("failover-load", replicas=replicas, options=options)
    with servers.running() as running:
        yield running


def _config(group: SentinelServers, multiplex: bool) -> SessionConfig:
    return sessions(
        secret_key=SECRET,
        redis_url=group.url,
        key_prefix=new_prefix(),
        redis_timeout=1.0,
        redis_multiplex=multiplex,
        invalidate_deadline=3.0,
    )


def _min_replicas(server: RedisServer) -> int:
    with server.client(decode_responses=True) as client:
        return int(client.config_get("min-replicas-to-write")["min-replicas-to-write"])


def _role(server: RedisServer) -> str:
    try:
        with server.client(decode_responses=True) as client:
            return str(client.execute_command("ROLE")[0])
    except redis.RedisError:
        return "unknown"


def _named_by_every_sentinel(group: SentinelServers, old: RedisServer) -> bool:
    ports = set()
    for sentinel in group.sentinels:
        with sentinel.client(decode_responses=True) as client:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", group.service)
        ports.add(int(port))
    return len(ports) == 1 and old.port not in ports


async def _poll(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SWITCH_DEADLINE
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def _watch_target(
    browser: Browser,
    user: str,
    invalidated: dict[str, float],
    outcome: Outcome,
    stop: threading.Event,
) -> None:
    """Read the target's session until stopped: a 200 as the user, for a request that
    started after invalidate_user returned, is a session served after its invalidation."""
    while not stop.is_set():
        started = time.monotonic()
        status, body = await browser.call("GET", "/me")
        outcome.count(status)
        if status == 200 and body["user"] not in (None, user):
            outcome.wrong_users += 1
        elif status == 200 and body["user"] == user and started > invalidated.get(user, 1e18):
            outcome.served_after_invalidation += 1
        await asyncio.sleep(0.005)


def _invalidation(
    config: SessionConfig, user: str, sync: bool, invalidated: dict[str, float]
) -> Coroutine[Any, Any, None]:
    async def invalidate() -> None:
        try:
            if sync:
                await asyncio.to_thread(config.invalidate_user, user)
            else:
                await config.ainvalidate_user(user)
        except (NotReplicated, StoreUnavailable):
            return  # not acknowledged: promises nothing
        invalidated[user] = time.monotonic()

    return invalidate()


@pytest.mark.anyio
@pytest.mark.parametrize("multiplex", [True, False], ids=["multiplexed", "pool"])
async def test_a_forced_failover_under_load(group: SentinelServers, multiplex: bool) -> None:
    config = _config(group, multiplex)
    outcome, lock, stop = Outcome(), threading.Lock(), threading.Event()
    async_browsers = browsers_for(config, "asgi")
    sync_browsers = browsers_for(config, "wsgi")
    writers = [
        Writer(
            f"writer-{n}", async_browsers() if n < ASYNC_WRITERS else sync_browsers(), outcome, lock
        )
        for n in range(ASYNC_WRITERS + SYNC_WRITERS)
    ]
    targets = {f"target-{n}": async_browsers() for n in range(TARGETS)}
    for user, browser in targets.items():
        await browser.ok("POST", f"/login?user={user}")
    await config.ainvalidate_user("warm-up")
    invalidated: dict[str, float] = {}

    tasks = [asyncio.ensure_future(writer.write(stop)) for writer in writers[:ASYNC_WRITERS]]
    threads = [
        threading.Thread(target=writer.write_in_thread, args=(stop,), daemon=True)
        for writer in writers[ASYNC_WRITERS:]
    ]
    for thread in threads:
        thread.start()
    tasks += [
        asyncio.ensure_future(_watch_target(browser, user, invalidated, outcome, stop))
        for user, browser in targets.items()
    ]
    try:
        await _poll(lambda: all(w.acknowledged for w in writers), "every writer wrote")
        old = group.current_master()
        await asyncio.to_thread(group.start_failover)
        promoted = [s for s in group.data_servers if s is not old]
        await _poll(lambda: any(_role(s) == "master" for s in promoted), "a promotion")
        promoted_at = time.monotonic()
        invalidations = []
        for n, user in enumerate(targets):  # in the window, and across the switch
            invalidations.append(
                asyncio.ensure_future(_invalidation(config, user, n % 2 == 0, invalidated))
            )
            await asyncio.sleep(0.1)
        await _poll(lambda: _named_by_every_sentinel(group, old), "the switch")
        switched_at = time.monotonic()
        await asyncio.sleep(AFTER_SWITCH)
        await asyncio.gather(*invalidations)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for thread in threads:
            await asyncio.to_thread(thread.join, STEP_DEADLINE)
    for writer in writers:
        await writer.read_last()

    mode = "multiplexed" if multiplex else "pool"
    lost = (outcome.lost(), outcome.lost(after=promoted_at), outcome.lost(after=switched_at))
    refused = [round(t - promoted_at, 2) for t in outcome.refused_at]
    window = (min(refused), max(refused)) if refused else None
    print(
        f"\nfailover {mode}: lost {lost} (all, after the promotion, after the switch), "
        f"503s from/to {window} s of the promotion seen, switch seen after "
        f"{switched_at - promoted_at:.2f} s: {outcome}"
    )
    assert set(outcome.statuses) <= {200, 503}, outcome.statuses
    assert outcome.wrong_users == 0
    assert outcome.served_after_invalidation == 0
    assert outcome.lost(after=switched_at) == 0
    if _min_replicas(group.master) == len(group.replicas):
        assert outcome.lost(after=promoted_at) == 0
    for browser in [*targets.values(), *(writer.browser for writer in writers)]:
        await browser.close()
    config.redis.close()
    await config.redis.aclose()
