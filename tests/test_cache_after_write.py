"""With local_cache, a session's write (WRITE_AND_TRACK) tracks the record again in the
same script, and the cache applies the write's changes to its copy: the request after a
write is served from the cache, and the cache stays correct when another worker writes or
invalidates around it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
import redis

from session_middleware import SessionConfig
from session_middleware._protocol.lua_scripts import (
    EMPTIED,
    EPOCH_MOVED,
    GONE,
    TOO_LARGE,
    WRITE_AND_TRACK,
    WRITTEN,
    ReadCall,
    WriteCall,
)
from session_middleware._transport.local_cache import TrackedCache

from .support import REDIS_URL
from .support.http import asgi_client
from .support.local_cache import cache_of, wait_until
from .test_local_cache import workers  # noqa: F401 (the fixture)

pytestmark = pytest.mark.anyio


def record_key_of(cache: TrackedCache) -> str:
    return next(str(key) for key in cache.entries if ":s:" in key)


async def written_once(
    config: SessionConfig, phone: httpx.AsyncClient, elsewhere: httpx.AsyncClient | None = None
) -> tuple[TrackedCache, str]:
    """Alice logged in on `phone` (and `elsewhere`, another worker's client), her session
    written once through `config`'s worker: its cache, and the session's record key."""
    await phone.get("/login?user=alice")
    await phone.get("/set?key=n&value=1")
    if elsewhere is not None:
        elsewhere.cookies = phone.cookies
    cache = cache_of(config)
    return cache, record_key_of(cache)


def at_the_first_write(
    monkeypatch: pytest.MonkeyPatch,
    cache: TrackedCache,
    action: Callable[[], Awaitable[None]],
    *,
    answered: bool,
) -> list[bool]:
    """Run `action` at this worker's next WRITE_AND_TRACK: before it is sent, or once
    Redis `answered` it and before the cache applies it. The list holds True once it
    ran."""
    tracking = cache.client()
    assert tracking is not None
    sent, done = tracking.run, list[bool]()

    async def run(commands, *options):  # type: ignore[no-untyped-def]
        first = commands[0][1] == WRITE_AND_TRACK and not done
        if first and not answered:
            done.append(True)
            await action()
        replies = await sent(commands, *options)
        if first and answered:
            done.append(True)
            await action()
        return replies

    monkeypatch.setattr(tracking, "run", run)
    return done


async def test_the_read_after_a_write_is_served_from_the_cache(workers) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    config, _ = workers
    cache = cache_of(config)
    async with asgi_client(config) as client:
        await client.get("/login?user=alice")
        for value in ("1", "2", "3"):
            await client.get(f"/set?key=n&value={value}")
            hits = cache.hits
            read = (await client.get("/read")).json()
            assert (read["user"], read["data"]["n"]) == ("alice", value)
            assert cache.hits == hits + 1, "the read after the write went to Redis"


async def test_a_write_elsewhere_after_this_workers_write_reaches_it(workers) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """This worker's write tracks the record again (its own write untracked it): a later
    write on another worker is reported, and never read stale."""
    here, there = workers
    async with asgi_client(here) as phone, asgi_client(there) as elsewhere:
        cache, record_key = await written_once(here, phone, elsewhere)
        assert (await elsewhere.get("/set?key=n&value=2")).status_code == 200
        await wait_until(lambda: record_key not in cache.entries)
        assert (await phone.get("/read")).json()["data"]["n"] == "2"


async def test_a_write_elsewhere_while_this_write_is_in_flight_is_not_lost(  # type: ignore[no-untyped-def]
    workers,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """This worker's write has its reply but has not applied it to the cache yet; another
    worker writes meanwhile, and its invalidation arrives: the copy with this write
    applied is not kept, and the next read has both workers' values."""
    here, there = workers
    async with asgi_client(here) as phone, asgi_client(there) as elsewhere:
        cache, record_key = await written_once(here, phone, elsewhere)

        async def write_elsewhere() -> None:
            assert (await elsewhere.get("/set?key=n&value=3")).status_code == 200
            await wait_until(lambda: cache._reading[record_key][1] == 1)

        held = at_the_first_write(monkeypatch, cache, write_elsewhere, answered=True)
        assert (await phone.get("/set?key=m&value=2")).status_code == 200
        assert held
        assert record_key not in cache.entries
        data = (await phone.get("/read")).json()["data"]
        assert (data["n"], data["m"]) == ("3", "2")


async def test_a_write_refused_in_flight_for_a_moved_epoch_keeps_the_session_ended(  # type: ignore[no-untyped-def]
    workers,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The request has loaded the session (from the cache) and is about to write it when
    another worker logs the user out everywhere: the write is refused, the epoch's copy is
    dropped (by the refused write, and by the invalidation), and the session stays
    rejected from then on."""
    here, there = workers
    async with asgi_client(here) as phone:
        cache, record_key = await written_once(here, phone)
        epoch_key = here.keys.epoch_key(here.keys.user_tag("alice"))
        assert epoch_key in cache.entries

        async def logout_elsewhere() -> None:
            await there.ainvalidate_user("alice")
            await wait_until(lambda: cache._reading[epoch_key][1] == 1)

        at_the_first_write(monkeypatch, cache, logout_elsewhere, answered=False)
        await phone.get("/set?key=n&value=2")
        monkeypatch.undo()
        assert epoch_key not in cache.entries
        with redis.Redis.from_url(REDIS_URL) as admin:
            assert admin.hget(record_key, "d:n") in (b'"1"', None)
        for _ in range(3):
            read = (await phone.get("/read")).json()
            assert read["user"] is None
            assert read["data"].get("n") != "2"


async def test_a_logout_everywhere_after_a_write_ran_and_before_it_is_applied_holds(  # type: ignore[no-untyped-def]
    workers,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """This worker's write ran in Redis (the epoch was still hers) and its reply is back,
    but the cache has not applied it yet when another worker logs the user out
    everywhere, and the invalidation of her epoch arrives: the copy with the write applied
    is not kept, the epoch's copy is gone, and her session is rejected from then on."""
    here, there = workers
    async with asgi_client(here) as phone:
        cache, record_key = await written_once(here, phone)
        epoch_key = here.keys.epoch_key(here.keys.user_tag("alice"))

        async def logout_elsewhere() -> None:
            await there.ainvalidate_user("alice")
            await wait_until(lambda: cache._reading[epoch_key][1] == 1)

        held = at_the_first_write(monkeypatch, cache, logout_elsewhere, answered=True)
        assert (await phone.get("/set?key=n&value=2")).status_code == 200
        monkeypatch.undo()
        assert held
        assert record_key not in cache.entries
        assert epoch_key not in cache.entries
        for _ in range(3):
            assert (await phone.get("/read")).json()["user"] is None


async def test_concurrent_writes_to_one_session_leave_the_cache_as_redis_holds_it(workers) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    here, there = workers
    async with asgi_client(here) as phone, asgi_client(there) as elsewhere:
        await phone.get("/login?user=alice")
        elsewhere.cookies = phone.cookies
        writes = [phone.get(f"/set?key=here{i}&value={i}") for i in range(8)]
        writes += [elsewhere.get(f"/set?key=there{i}&value={i}") for i in range(8)]
        assert {r.status_code for r in await asyncio.gather(*writes)} == {200}
        expected = {f"{side}{i}": str(i) for side in ("here", "there") for i in range(8)}
        # Each worker keeps its copy with its own writes applied, and learns of the other's later
        # writes from its listener: until then it may serve that copy (the window the
        # cache allows). Once a PING sent after the writes has been answered, it has.
        done = time.monotonic()
        for cache in (cache_of(here), cache_of(there)):
            await wait_until(lambda: not cache._reading and cache.proven_at > done)  # noqa: B023
        for client in (phone, elsewhere):
            data = (await client.get("/read")).json()["data"]
            assert {k: v for k, v in data.items() if k in expected} == expected


@pytest.mark.parametrize(
    ("stored", "pairs", "deleted", "outcome"),
    [
        ({"c": "1", "d:a": '"x"'}, ["d:a", '"y"'], (), WRITTEN),
        ({"c": "1", "d:a": '"x"'}, ["d:a", '"' + "y" * 40 + '"'], (), TOO_LARGE),
        ({}, ["d:a", '"y"'], (), GONE),
        ({"c": "1", "d:a": '"x"'}, [], ("d:a",), EMPTIED),
        ({"c": "1", "e": "old", "u": '"alice"', "d:a": '"x"'}, ["d:a", '"y"'], (), EPOCH_MOVED),
    ],
    ids=["written", "too-large", "gone", "emptied", "epoch-moved"],
)
async def test_every_outcome_of_a_write_reads_as_without_the_cache(  # type: ignore[no-untyped-def]
    workers,  # noqa: F811
    key_prefix: str,
    stored: dict[str, str],
    pairs: list[str],
    deleted: tuple[str, ...],
    outcome: int,
) -> None:
    """WRITE_AND_TRACK answers as WRITE would (the outcome, and TOO_LARGE's size), leaves
    the record as WRITE would, and the cache, which held the record and the epoch, holds
    the record as Redis does after a write, and the epoch as it was; after any other
    outcome, neither. The user's epoch is 'new' by then; a record of hers was loaded with
    'old'."""
    config, _ = workers
    record, epoch_key = f"{key_prefix}{{t}}:s:1", f"{key_prefix}{{t}}:e"
    call = WriteCall(record=record, epoch_key=epoch_key, mode="redis", carried="old",
                     wanted="old", stamp="", max_bytes=30, expire="PEXPIRE",
                     expire_at=60_000, score="", handle="1", set_pairs=pairs,
                     deleted=deleted)  # fmt: skip
    if "u" not in stored:
        call.carried = ""
    results = []
    cache = cache_of(config)
    with redis.Redis.from_url(REDIS_URL, decode_responses=True) as admin:
        for through_cache in (False, True):
            admin.delete(record, epoch_key)
            if stored:
                admin.hset(record, mapping=stored)
            admin.set(epoch_key, "new")
            if through_cache:
                await config.redis.async_().run([read_of(record, epoch_key)])
                assert (record in cache.entries) == bool(stored)
                (reply,) = await config.redis.async_().run([call.command()])
                cached, epoch_kept = cache.entries.get(record), epoch_key in cache.entries
            else:
                reply = admin.execute_command(*call.command())
            results.append((WriteCall.reply(reply), admin.hgetall(record)))
        admin.delete(record, epoch_key)
    assert results[0] == results[1]
    assert results[1][0].outcome == outcome
    assert epoch_kept == (outcome == WRITTEN), "only an applied write keeps the epoch's copy"
    if outcome == WRITTEN:
        assert cached is not None
        texts = iter([item.decode() for item in cached])
        assert dict(zip(texts, texts, strict=True)) == results[1][1]
    else:
        assert cached is None


def read_of(record: str, epoch_key: str) -> tuple[object, ...]:
    return ReadCall(record=record, epoch_key=epoch_key).command()


@pytest.mark.parametrize(
    ("pairs", "deleted", "stamp"),
    [
        (["d:a", '"y"'], (), ""),
        (["r", "2.5", "d:new", "[1]"], (), ""),
        ([], ("d:a",), ""),
        (["d:b", "2", "d:c", "3"], ("d:a", "d:gone"), ""),
        (["d:a", "null"], (), "stamped"),
        (["d:new", "1"], ("d:a",), "stamped"),
        (["d:a", '"z"', "d:b", "1"], ("d:a",), ""),
        (["d:b", "1", "d:b", "2"], (), ""),
        ([], ("e",), "stamped"),
        (["d:ü", '"é ✓"'], (), ""),
    ],
    ids=[
        "replaced",
        "added",
        "deleted",
        "all",
        "stamped",
        "added-deleted-stamped",
        "set-then-deleted",
        "set-twice",
        "stamp-deleted-then-set",
        "not-ascii",
    ],
)
@pytest.mark.parametrize("size", [4, 300], ids=["small", "large"])
async def test_the_copy_after_a_write_is_what_redis_holds(  # type: ignore[no-untyped-def]
    workers,  # noqa: F811
    key_prefix: str,
    pairs: list[str],
    deleted: tuple[str, ...],
    stamp: str,
    size: int,
) -> None:
    """The cache applies a write's changes to its copy of the record: the copy is what
    HGETALL gives after the write, field for field, and in the same order while the hash
    is small (a large one's order is Redis's own). The next read is served from it."""
    config, _ = workers
    cache = cache_of(config)
    record, epoch_key = f"{key_prefix}{{t}}:s:1", f"{key_prefix}{{t}}:e"
    stored = {"c": "1", "r": "1.5", "e": "old", "u": '"alice"', "d:a": '"x"'}
    stored |= {f"d:k{i}": str(i) for i in range(size)}
    call = WriteCall(record=record, epoch_key=epoch_key, mode="redis", carried="old",
                     wanted="old", stamp=stamp, max_bytes=100_000, expire="PEXPIRE",
                     expire_at=60_000, score="", handle="1", set_pairs=pairs,
                     deleted=deleted)  # fmt: skip
    with redis.Redis.from_url(REDIS_URL) as admin:
        admin.hset(record, mapping=stored)
        admin.set(epoch_key, "old")
        try:
            await config.redis.async_().run([read_of(record, epoch_key)])
            (reply,) = await config.redis.async_().run([call.command()])
            assert WriteCall.reply(reply).outcome == WRITTEN
            held = admin.eval("return redis.call('HGETALL', KEYS[1])", 1, record)  # a list
            cached, epoch_kept = cache.entries[record], epoch_key in cache.entries
            hits = cache.hits
            (read,) = await config.redis.async_().run([read_of(record, epoch_key)])
            assert cache.hits == hits + 1, "the read after the write went to Redis"
        finally:
            admin.delete(record, epoch_key)
    if size < 100:
        assert cached == held
    else:
        assert as_dict(cached) == as_dict(held)
    assert epoch_kept, "the write dropped the epoch's copy"
    assert read[0] is cached


async def test_a_write_that_ends_the_record_keeps_no_copy(workers, key_prefix: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A write whose expiry time has passed (a request that outlived its session's end by
    Redis's clock) deletes the record it wrote, and answers WRITTEN: the cache keeps no
    copy of a record no invalidation would ever drop (a session id is never reused)."""
    config, _ = workers
    cache = cache_of(config)
    record, epoch_key = f"{key_prefix}{{t}}:s:1", f"{key_prefix}{{t}}:e"
    call = WriteCall(record=record, epoch_key=epoch_key, mode="redis", carried="old",
                     wanted="old", stamp="", max_bytes=100_000, expire="PEXPIREAT",
                     expire_at=int(time.time() * 1000) - 1_000, score="", handle="1",
                     set_pairs=["d:a", '"y"'])  # fmt: skip
    with redis.Redis.from_url(REDIS_URL) as admin:
        admin.hset(record, mapping={"c": "1", "e": "old", "u": '"alice"', "d:a": '"x"'})
        admin.set(epoch_key, "old")
        try:
            await config.redis.async_().run([read_of(record, epoch_key)])
            assert record in cache.entries
            (reply,) = await config.redis.async_().run([call.command()])
            assert WriteCall.reply(reply).outcome == WRITTEN
            assert admin.exists(record) == 0
            assert record not in cache.entries
            (read,) = await config.redis.async_().run([read_of(record, epoch_key)])
            assert read[0] == []
        finally:
            admin.delete(record, epoch_key)


def as_dict(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


async def test_a_tracking_connection_killed_under_a_write_leaves_nothing_stale(  # type: ignore[no-untyped-def]
    workers,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis closes this worker's tracking connection (CLIENT KILL, a proxy) while a write
    is on its way: Redis no longer reports what that connection read, so nothing read
    before the new connection is kept; the write is answered or refused, and the next
    reads give what Redis holds, while another worker keeps writing."""
    here, there = workers
    async with asgi_client(here) as phone, asgi_client(there) as elsewhere:
        cache, record_key = await written_once(here, phone, elsewhere)

        async def kill_the_tracking_connection() -> None:
            with redis.Redis.from_url(REDIS_URL) as admin:
                for client_id in set(cache._tracking.values()):
                    admin.client_kill_filter(_id=client_id)

        killed = at_the_first_write(
            monkeypatch, cache, kill_the_tracking_connection, answered=False
        )
        written = await phone.get("/set?key=n&value=2")
        monkeypatch.undo()
        assert killed and written.status_code in (200, 503)
        assert (await elsewhere.get("/set?key=n&value=3")).status_code == 200
        with redis.Redis.from_url(REDIS_URL) as admin:
            assert admin.hget(record_key, "d:n") == b'"3"'
        await wait_until(lambda: record_key not in cache.entries)
        for _ in range(3):
            assert (await phone.get("/read")).json()["data"]["n"] == "3"


async def test_a_write_while_the_listener_is_lost_goes_to_redis_uncached(workers) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """No listener subscribed (lost, reconnecting, or not yet up after a cold start): the
    write is the plain WRITE on the uncached clients, and nothing is kept."""
    here, _ = workers
    async with asgi_client(here) as phone:
        cache, record_key = await written_once(here, phone)
        cache.drop_all()
        assert cache.client() is None
        assert (await phone.get("/set?key=n&value=2")).status_code == 200
        assert not cache.entries
        with redis.Redis.from_url(REDIS_URL) as admin:
            assert admin.hget(record_key, "d:n") == b'"2"'
        assert (await phone.get("/read")).json()["data"]["n"] == "2"
        assert not cache.entries
