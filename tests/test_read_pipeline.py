"""The request's session read against a real Redis: HGETALL of the record, then GET of the
user's epoch, in one round trip; the atomic read script only when the epoch read is not the
one the record is stamped with, and only the script's answer rejects.

Another request's action is placed between the pipeline's two commands by running the
core's steps here, one command at a time (the core is sans-IO: this is its runner, on the
real Redis)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from session_middleware import SessionConfig, SessionEvent, sessions
from session_middleware._core.lifecycle import Opened
from session_middleware._core.steps import Emit, RedisIO
from session_middleware._protocol.lua_scripts import READ
from session_middleware._transport.round_trip import run_sync

from .support import REDIS_URL, SECRET
from .support.apps import wsgi_app
from .support.counting import Counter, command_name, counted_async_client, counted_sync_client
from .support.http import asgi_client, cookie_of, wsgi_call
from .support.local_cache import cache_of, ready
from .support.redis_servers import RedisServer, server

__all__ = ["server"]  # the fixture

PIPELINE, SCRIPT = ("HGETALL", "GET"), ("READ",)


@dataclass
class Opening:
    """What opening a session came to, and the round trips it took (command names)."""

    opened: Opened
    round_trips: list[tuple[str, ...]] = field(default_factory=list)
    events: list[SessionEvent] = field(default_factory=list)

    @property
    def user(self) -> Any:
        return self.opened.session.user_id


def open_with(config: SessionConfig, header: str, between: Callable[[], None]) -> Opening:
    """Core.open run on the real Redis one command at a time, `between` run after the
    first round trip's first command (the record's HGETALL) and before the rest."""
    step = config.core.open(header, time.time())
    client = config.redis.sync()
    trips: list[tuple[str, ...]] = []
    events: list[SessionEvent] = []
    try:
        request = next(step)
        while True:
            if isinstance(request, Emit):
                events += request.events
                request = step.send(None)
                continue
            assert isinstance(request, RedisIO) and request.redis is None
            trips.append(tuple(command_name(command) for command in request.commands))
            replies: list[Any] = []
            for index, command in enumerate(request.commands):
                if len(trips) == 1 and index == 1:
                    between()
                replies += run_sync(client, [command], request.errors_as_replies)
            request = step.send(replies)
    except StopIteration as done:
        return Opening(done.value, trips, events)


@pytest.fixture
def config(key_prefix: str) -> Any:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    yield config
    config.redis.close()


def log_in(config: SessionConfig, user: str = "alice") -> str:
    """A new device of `user`: its cookie header."""
    return f"session={cookie_of(wsgi_call(config(wsgi_app), f'/login?user={user}')[1])}"


def user_of(config: SessionConfig, header: str) -> Any:
    """Who a request with this cookie is signed in as, after any clean-up it does."""
    return wsgi_call(config(wsgi_app), "/read", header)[2]["user"]


def logout_others_from(config: SessionConfig, header: str) -> Callable[[], None]:
    """A request of the device `header` that logs the user's other sessions out: a new
    epoch, and that device's record re-stamped with it."""

    def request() -> None:
        assert wsgi_call(config(wsgi_app), "/others", header)[0].startswith("200")

    return request


def test_a_record_and_the_epoch_it_carries_take_one_round_trip(config: SessionConfig) -> None:
    phone = log_in(config)
    opening = open_with(config, phone, lambda: None)
    assert opening.round_trips == [PIPELINE] and opening.events == []
    assert opening.user == "alice"


def test_this_sessions_own_logout_others_between_the_two_reads_keeps_it_signed_in(
    config: SessionConfig,
) -> None:
    phone, laptop = log_in(config), log_in(config)
    opening = open_with(config, phone, logout_others_from(config, phone))
    # The record was read stamped with the old epoch and the epoch read is the new one:
    # the read script, asked again, finds the record re-stamped.
    assert opening.round_trips == [PIPELINE, SCRIPT]
    assert opening.user == "alice" and opening.opened.rejected is None
    assert opening.events == [] and not opening.opened.cleanup
    config.run_sync(config.core.commit(opening.opened, time.time()))
    assert user_of(config, phone) == "alice", "the device that logged the others out stays"
    assert user_of(config, laptop) is None


def signed_out_by_the_script(config: SessionConfig, opening: Opening, header: str) -> None:
    """The pipeline's pair did not match, the read script rejected the session, and the
    request's clean-up ended it."""
    assert opening.round_trips == [PIPELINE, SCRIPT]
    assert opening.user is None and opening.opened.rejected == "epoch"
    assert [(e.kind, e.reason) for e in opening.events] == [("rejected", "epoch")]
    config.run_sync(config.core.commit(opening.opened, time.time()))
    assert user_of(config, header) is None


def test_another_devices_logout_others_between_the_two_reads_rejects(
    config: SessionConfig,
) -> None:
    phone, laptop = log_in(config), log_in(config)
    signed_out_by_the_script(
        config, open_with(config, phone, logout_others_from(config, laptop)), phone
    )
    assert user_of(config, laptop) == "alice"


def test_invalidate_user_between_the_two_reads_rejects(config: SessionConfig) -> None:
    phone = log_in(config)
    opening = open_with(config, phone, lambda: config.invalidate_user("alice"))
    signed_out_by_the_script(config, opening, phone)


def test_a_matching_read_costs_one_round_trip_and_a_mismatching_one_two(key_prefix: str) -> None:
    counter = Counter()
    client = counted_sync_client(counter)
    config = sessions(secret_key=SECRET, redis=client, key_prefix=key_prefix)
    phone = log_in(config)
    counter.reset()
    assert config.run_sync(config.core.open(phone, time.time())).session.user_id == "alice"
    assert (counter.round_trips, counter.commands) == (1, ["HGETALL", "GET"])
    config.invalidate_user("alice")
    counter.reset()
    assert config.run_sync(config.core.open(phone, time.time())).rejected == "epoch"
    assert (counter.round_trips, counter.commands) == (2, ["HGETALL", "GET", "READ"])
    client.close()


@pytest.mark.anyio
async def test_the_async_runner_reads_the_same_way(key_prefix: str) -> None:
    counter = Counter()
    client = await counted_async_client(counter)
    config = sessions(secret_key=SECRET, redis=client, key_prefix=key_prefix)
    phone = log_in(sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix))
    counter.reset()
    opened = await config.run_async(config.core.open(phone, time.time()))
    assert opened.session.user_id == "alice"
    assert (counter.round_trips, counter.commands) == (1, ["HGETALL", "GET"])
    await config.ainvalidate_user("alice")
    counter.reset()
    assert (await config.run_async(config.core.open(phone, time.time()))).rejected == "epoch"
    assert (counter.round_trips, counter.commands) == (2, ["HGETALL", "GET", "READ"])
    await client.aclose()


@pytest.mark.anyio
async def test_the_local_cache_answers_the_pipeline_and_fills_itself_from_the_script(
    server: RedisServer,
) -> None:
    """A miss is the read script on the tracking connection, so what the cache keeps of a
    record and its epoch was read at one instant; a hit sends nothing."""
    config = sessions(secret_key=SECRET, redis_url=server.url, local_cache=100)
    await ready(config)
    admin = server.client()
    async with asgi_client(config) as device:
        await device.get("/login?user=alice")
        admin.script_load(READ)  # counted once: not a NOSCRIPT and then an EVAL
        admin.config_resetstat()
        for _ in range(3):
            assert (await device.get("/read")).json()["user"] == "alice"
    stats = admin.info("commandstats")
    scripts = sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("eval", "evalsha"))
    # Redis counts the commands a script runs too: the one HGETALL is the script's own.
    assert (scripts, stats["cmdstat_hgetall"]["calls"]) == (1, 1)
    assert cache_of(config).hits == 2
    await cache_of(config).aclose()
    admin.close()


def commit_pausing_after_bump(
    config: SessionConfig, opened: Any, between: Callable[[], None]
) -> Any:
    """Core.commit on the real Redis, `between` run right after the round trip that bumps
    the epoch and before the next one."""
    step = config.core.commit(opened, time.time())
    client = config.redis.sync()
    bumped = False
    try:
        request = next(step)
        while True:
            if isinstance(request, Emit):
                request = step.send(None)
                continue
            assert isinstance(request, RedisIO)  # one Redis here: the epochs are on it too
            if bumped:
                between()
                bumped = False
            names = [command_name(command) for command in request.commands]
            replies = run_sync(client, list(request.commands), request.errors_as_replies)
            bumped = "BUMP_IF" in names
            request = step.send(replies)
    except StopIteration as done:
        return done.value


def test_a_read_of_the_same_session_between_bump_and_restamp_keeps_it_signed_in(
    config: SessionConfig,
) -> None:
    phone, laptop, tablet = log_in(config), log_in(config), log_in(config)
    opened = config.run_sync(config.core.open(phone, time.time()))
    opened.session.logout_others()
    seen: list[Any] = []
    between = lambda: seen.append(user_of(config, phone))  # noqa: E731
    committed = commit_pausing_after_bump(config, opened, between)
    assert seen == ["alice"], "the concurrent read of the asking session is served"
    assert committed.interrupted is None and committed.rejected is None
    header = phone
    if committed.set_cookie:
        header = f"session={cookie_of({'set-cookie': committed.set_cookie})}"
    assert user_of(config, header) == "alice", "the device that logged the others out stays"
    assert user_of(config, laptop) is None and user_of(config, tablet) is None
