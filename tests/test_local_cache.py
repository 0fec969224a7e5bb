"""The opt-in local cache: no round trip on a repeat read, correct after every change."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session

from session_middleware import ConfigurationError, SessionConfig, sessions
from session_middleware._protocol.lua_scripts import LOGIN, ReadCall
from session_middleware._transport.local_cache import TrackedCache, atomic_read, session_read

from .support import REDIS_URL, SECRET, keys_under
from .support.http import asgi_client
from .support.local_cache import cache_of, listener_late, ready, wait_until
from .support.sql import ASYNC_BACKENDS, async_users, user_rows

pytestmark = pytest.mark.anyio


def worker(prefix: str, multiplex: bool = True) -> SessionConfig:
    return sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=prefix,
        local_cache=1000,
        redis_multiplex=multiplex,
    )


@pytest.fixture(params=[True, False], ids=["multiplexed", "pooled"])
async def workers(
    key_prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[SessionConfig, SessionConfig]]:
    first, second = worker(key_prefix, request.param), worker(key_prefix, request.param)
    for config in (first, second):
        await ready(config)
    yield first, second
    for config in (first, second):
        await cache_of(config).aclose()


async def test_a_repeat_read_is_served_locally(workers) -> None:  # type: ignore[no-untyped-def]
    config, _ = workers
    async with asgi_client(config) as client:
        await client.get("/login?user=alice")
        await client.get("/read")
        hits = cache_of(config).hits
        for _ in range(5):
            assert (await client.get("/read")).json()["user"] == "alice"
        assert cache_of(config).hits == hits + 5


async def test_an_invalidation_on_another_worker_reaches_this_one(workers) -> None:  # type: ignore[no-untyped-def]
    here, there = workers
    async with asgi_client(here) as client:
        await client.get("/login?user=alice")
        await client.get("/read")
        await client.get("/read")
        epoch_key = here.keys.epoch_key(here.keys.user_tag("alice"))
        assert epoch_key in cache_of(here).entries
        await there.ainvalidate_user("alice")
        window = await wait_until(lambda: epoch_key not in cache_of(here).entries)
        print(f"invalidation window: {window * 1000:.2f} ms")
        assert (await client.get("/read")).json()["rejected"] == "epoch"


@pytest.mark.parametrize("call", ["async", "sync-in-a-thread"])
async def test_an_invalidation_on_this_worker_is_honoured_here_at_once(workers, call: str) -> None:  # type: ignore[no-untyped-def]
    """invalidate_user writes the epoch on a connection of its own (one that waits for a
    replica, or the sync client of a view run in a thread), which Redis reports to this
    worker's listener only later (held back here): the epoch's copy is dropped before the
    call returns, and the next read here is rejected."""
    config, _ = workers
    cache = cache_of(config)
    epoch_key = config.keys.epoch_key(config.keys.user_tag("alice"))
    async with asgi_client(config) as client:
        await client.get("/login?user=alice")
        await client.get("/read")
        assert epoch_key in cache.entries
        with listener_late(cache):
            if call == "async":
                await config.ainvalidate_user("alice")
            else:
                await asyncio.to_thread(config.invalidate_user, "alice")
            assert epoch_key not in cache.entries
            assert (await client.get("/read")).json()["rejected"] == "epoch"


async def test_a_sync_session_read_drops_nothing(key_prefix: str) -> None:
    """A session read on the sync client (a sync view's) writes nothing: the caches keep
    their copies; a write there drops the copies of what it wrote."""
    config = worker(key_prefix)
    cache = cache_of(config)
    cache.entries.update({"record": [b"c", b"1"], "epoch": b"e1"})
    config.redis.sync_wrote([("HGETALL", "record"), ("GET", "epoch")])
    assert dict(cache.entries) == {"record": [b"c", b"1"], "epoch": b"e1"}
    config.redis.sync_wrote([("SET", "epoch", "e2")])
    assert dict(cache.entries) == {"record": [b"c", b"1"]}
    await config.aclose()


async def test_this_workers_own_changes_are_never_read_stale(workers) -> None:  # type: ignore[no-untyped-def]
    config, _ = workers
    async with asgi_client(config) as phone, asgi_client(config) as laptop:
        await phone.get("/login?user=alice")
        await laptop.get("/login?user=alice")
        await laptop.get("/read")
        await phone.get("/read")
        await phone.get("/others")
        assert (await laptop.get("/read")).json()["rejected"] == "epoch"
        for value in ("1", "2", "3"):
            await phone.get(f"/set?key=n&value={value}")
            assert (await phone.get("/read")).json()["data"]["n"] == value


async def test_a_write_elsewhere_is_seen_here(workers) -> None:  # type: ignore[no-untyped-def]
    here, there = workers
    async with asgi_client(here) as client:
        await client.get("/set?key=n&value=1")
        cookie = client.cookies["session"]
        await client.get("/read")
        record_key = next(k for k in cache_of(here).entries if ":s:" in k)
        async with asgi_client(there, cookie) as other:
            await other.get("/set?key=n&value=2")
        await wait_until(lambda: record_key not in cache_of(here).entries)
        assert (await client.get("/read")).json()["data"]["n"] == "2"


async def test_losing_the_listener_drops_the_cache_until_it_is_back(workers) -> None:  # type: ignore[no-untyped-def]
    config, _ = workers
    async with asgi_client(config) as client:
        await client.get("/login?user=alice")
        await client.get("/read")
        cache = cache_of(config)
        old_listener = cache.listener_id
        assert cache.entries and cache.healthy
        redis.Redis.from_url(REDIS_URL).client_kill_filter(_id=old_listener)
        await wait_until(lambda: not cache.healthy or cache.listener_id != old_listener)
        assert not cache.entries
        await wait_until(lambda: cache.healthy)
        assert cache.listener_id != old_listener
        assert (await client.get("/read")).json()["user"] == "alice"
        await client.get("/read")
        tracking = await cache.client().execute_command("CLIENT", "TRACKINGINFO")
        assert tracking[3] == cache.listener_id


@pytest.mark.parametrize("epoch_key", [None, "p:{t}:e"])
def test_a_miss_sends_the_read_script_the_core_would(epoch_key: str | None) -> None:
    """The cache spells the READ call out: it must be the call ReadCall builds."""
    call = ReadCall(record="p:{t}:s:h", epoch_key=epoch_key)
    pipelined = [("HGETALL", "p:{t}:s:h")] + ([("GET", epoch_key)] if epoch_key else [])
    keys = session_read(pipelined)
    assert keys is not None
    assert atomic_read(pipelined, keys) == call.command()
    assert atomic_read([call.command()], keys) == call.command()


def test_the_local_cache_needs_a_url() -> None:
    with pytest.raises(ConfigurationError, match="redis_url"):
        sessions(secret_key=SECRET, redis=redis.Redis(), local_cache=100)


async def test_another_login_keeps_the_epoch_cached_elsewhere(workers) -> None:  # type: ignore[no-untyped-def]
    here, there = workers
    async with asgi_client(here) as client, asgi_client(there) as other:
        await client.get("/login?user=alice")
        await client.get("/read")
        await client.get("/read")
        epoch_key = here.keys.epoch_key(here.keys.user_tag("alice"))
        assert epoch_key in cache_of(here).entries
        await other.get("/login?user=alice")
        await asyncio.sleep(0.05)  # an invalidation, had there been one, arrives in ~1 ms
        assert epoch_key in cache_of(here).entries


def test_a_login_extends_an_epoch_that_would_expire_before_its_session(key_prefix: str) -> None:
    from .support.apps import wsgi_app

    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, max_age=3600)
    transport = httpx.WSGITransport(app=config(wsgi_app))
    with httpx.Client(transport=transport, base_url="http://t") as client:
        client.get("/login?user=alice")
        plain = redis.Redis.from_url(REDIS_URL)
        epoch_key = config.keys.epoch_key(config.keys.user_tag("alice"))
        assert plain.pttl(epoch_key) > 3_600_000
        plain.pexpire(epoch_key, 10_000)
        client.get("/login?user=alice")
        assert plain.pttl(epoch_key) > 3_600_000
        plain.close()


async def test_a_session_ended_by_the_cap_is_not_served_from_the_cache(key_prefix: str) -> None:
    config = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        local_cache=1000,
        max_sessions_per_user=1,
    )
    await ready(config)
    async with asgi_client(config) as first, asgi_client(config) as second:
        await first.get("/login?user=alice")
        await first.get("/read")
        hits = cache_of(config).hits
        assert (await first.get("/read")).json()["user"] == "alice"
        assert cache_of(config).hits == hits + 1, "served from the cache"
        await second.get("/login?user=alice")  # the cap ends the first session
        await second.get("/read")  # her epoch, cached again: the ended record must not be
        assert (await first.get("/read")).json()["user"] is None
    await cache_of(config).aclose()


async def test_a_key_of_another_type_is_refused_not_a_503(key_prefix: str) -> None:
    config = worker(key_prefix)
    await ready(config)
    async with asgi_client(config) as client:
        await client.get("/login?user=alice")
        (key,) = [k for k in keys_under(key_prefix) if ":s:" in k]
        redis.Redis.from_url(REDIS_URL).set(key, "a string")
        response = await client.get("/read")
        assert response.status_code == 200 and response.json()["user"] is None
    assert [k for k in keys_under(key_prefix) if ":s:" in k] == []
    await cache_of(config).aclose()


async def test_a_write_on_its_way_to_redis_leaves_no_stale_copy_once_acknowledged(  # type: ignore[no-untyped-def]
    workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write is held between the cache and Redis while a watcher of its keys is ready
    to read them again the moment it is told: it is told only once Redis applied the
    write, and no read after the acknowledgement is served what the write replaced."""
    config, _ = workers
    async with asgi_client(config) as writer, asgi_client(config) as reader:
        await writer.get("/set?key=n&value=1")
        reader.cookies = writer.cookies
        assert (await reader.get("/read")).json()["data"]["n"] == "1"
        cache = cache_of(config)
        record_key = next(k for k in cache.entries if ":s:" in k)
        tracking = cache.client()
        arrived, applied = asyncio.Event(), asyncio.Event()
        sent = tracking.run

        async def run_holding_writes(commands, *options):  # type: ignore[no-untyped-def]
            if session_read(commands) is None:
                arrived.set()
                await applied.wait()
            return await sent(commands, *options)

        monkeypatch.setattr(tracking, "run", run_holding_writes)
        loop = asyncio.get_running_loop()
        told_while_held: list[bool] = []
        rereads: list[asyncio.Future[httpx.Response]] = []

        def reread() -> None:
            rereads.append(asyncio.ensure_future(reader.get("/read")))

        def told() -> None:  # from the event loop or the listener's thread
            told_while_held.append(not applied.is_set())
            loop.call_soon_threadsafe(reread)

        unwatch = cache.watch([record_key], told)
        try:
            write = asyncio.ensure_future(writer.get("/set?key=n&value=2"))
            await asyncio.wait_for(arrived.wait(), 5)
            # Meanwhile a read may still be served what the write replaces: it is not done.
            assert (await reader.get("/read")).json()["data"]["n"] == "1"
            applied.set()
            assert (await write).status_code == 200
            assert told_while_held and not any(told_while_held)
            assert (await reader.get("/read")).json()["data"]["n"] == "2"
            await wait_until(lambda: all(read.done() for read in rereads))
            assert [read.result().json()["data"]["n"] for read in rereads] == ["2"] * len(rereads)
        finally:
            unwatch()


@pytest.mark.parametrize("last", ["write", "read"])
@pytest.mark.parametrize("multiplex", [True, False], ids=["multiplexed", "pooled"])
async def test_a_login_cancelled_on_its_way_leaves_no_session_its_cap_ended(
    key_prefix: str, multiplex: bool, last: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A login whose cap ends another session of the user on this worker is cancelled
    (the client gone) once sent: Redis runs it, and deletes the ended record on this
    worker's own connection, which it does not report (NOLOOP). With no reply, what it
    deleted is unknown, so the whole cache goes: the ended session is never served."""
    config = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        local_cache=1000,
        redis_multiplex=multiplex,
        max_sessions_per_user=2,
    )
    cache = await ready(config)
    async with (
        asgi_client(config) as phone,
        asgi_client(config) as laptop,
        asgi_client(config) as tablet,
    ):
        await phone.get("/login?user=alice")
        (record_key,) = [k for k in keys_under(key_prefix) if ":s:" in k]
        await tablet.get("/login?user=alice")
        await phone.get("/set?key=n&value=1")
        if last == "read":
            await phone.get("/read")
        assert record_key in cache.entries
        tracking = cache.client()
        assert tracking is not None
        sent, login_sent = tracking.run, asyncio.Event()

        async def run_then_cancel(commands, *options):  # type: ignore[no-untyped-def]
            running = asyncio.ensure_future(sent(commands, *options))
            if any(command[1] == LOGIN for command in commands if command[0] == "EVAL"):
                await asyncio.sleep(0)  # written to Redis
                login_sent.set()
            return await running

        monkeypatch.setattr(tracking, "run", run_then_cancel)
        login = asyncio.ensure_future(laptop.get("/login?user=alice"))
        await asyncio.wait_for(login_sent.wait(), 5)
        login.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await login
        monkeypatch.undo()
        with redis.Redis.from_url(REDIS_URL) as admin:
            await wait_until(lambda: admin.exists(record_key) == 0)  # the cap ended it
        await tablet.get("/read")  # her epoch, cached again
        assert (await phone.get("/read")).json()["user"] is None
    await cache.aclose()


def test_a_read_that_finds_a_key_gone_forgets_the_copy() -> None:
    """A key that expired as this worker's own connection read it is deleted unreported
    (NOLOOP): the read finding nothing is what tells the cache."""
    cache = TrackedCache("redis://127.0.0.1:1", {}, max_entries=10)
    cache.healthy = True
    cache.entries["epoch"] = "e1"
    generation = cache.begin_read(["record", "epoch"])
    cache.end_read(["record", "epoch"], [[b"c", b"1"], None], generation)
    assert dict(cache.entries) == {"record": [b"c", b"1"]}


async def test_a_bump_in_a_transaction_of_a_sync_view_is_honoured_here_at_once(
    key_prefix: str, tmp_path: Path
) -> None:
    """The SQL provider's bump_in, committed in a thread (a sync view under ASGI, on a sync
    engine of the same database), publishes the new epoch on the sync client: this
    worker's cache drops its copy before the commit returns, and the next read here is
    rejected."""
    backend = ASYNC_BACKENDS[0]
    async with async_users(backend, tmp_path, sa.String(20), user_rows(("alice",))) as (
        epochs,
        _,
    ):
        config = sessions(
            secret_key=SECRET,
            redis_url=REDIS_URL,
            key_prefix=key_prefix,
            epochs=epochs,
            local_cache=1000,
        )
        cache = await ready(config)
        epoch_key = config.keys.epoch_key(config.keys.user_tag("alice"))
        views_engine = sa.create_engine(f"sqlite:///{tmp_path}/epochs.db")

        def reset_password() -> None:
            with Session(views_engine) as transaction:
                epochs.bump_in(transaction, "alice")
                transaction.commit()

        try:
            async with asgi_client(config) as client:
                await client.get("/login?user=alice")
                await client.get("/read")
                assert epoch_key in cache.entries
                with listener_late(cache):
                    await asyncio.to_thread(reset_password)
                    assert epoch_key not in cache.entries
                    assert (await client.get("/read")).json()["rejected"] == "epoch"
        finally:
            views_engine.dispose()
            await cache.aclose()
