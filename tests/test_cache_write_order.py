"""With local_cache on the multiplexed connection, this worker's own write, once answered,
leaves the reads in flight behind it to be kept: Redis ran them after the write, on the
same connection. Requests writing one session at once keep it cached; a write whose reply
never came (cancelled, timed out), a pool of connections, a connection replaced meanwhile
and another worker's write still void those reads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from session_middleware._transport.local_cache import TrackedCache

from .support.http import asgi_client
from .support.local_cache import cache_of, ready, wait_until
from .test_cache_after_write import at_the_first_write, record_key_of, written_once
from .test_local_cache import worker, workers  # noqa: F401 (the fixture)

pytestmark = pytest.mark.anyio

RECORD, EPOCH, INDEX = "record", "epoch", "index"
READ_KEYS = [RECORD, EPOCH]
READ_BACK = [[b"c", b"2"], "e1"]


def cache_with_a_read_in_flight(multiplexed: bool) -> tuple[TrackedCache, int, int]:
    """A healthy cache, a write sent at its current generation, then a read of the record
    begun: the cache, the write's generation and the read's."""
    cache = TrackedCache("redis://127.0.0.1:1", {}, max_entries=10, multiplexed=multiplexed)
    cache.healthy = True
    cache.entries[RECORD] = [b"c", b"1"]
    write_generation = cache.generation
    return cache, write_generation, cache.begin_read(READ_KEYS)


def test_a_read_sent_after_an_answered_write_on_the_same_connection_is_kept() -> None:
    cache, write_generation, read_generation = cache_with_a_read_in_flight(multiplexed=True)
    cache.wrote([RECORD, EPOCH, INDEX], answered=True, generation=write_generation)
    assert RECORD not in cache.entries
    cache.end_read(READ_KEYS, READ_BACK, read_generation)
    assert dict(cache.entries) == {RECORD: READ_BACK[0], EPOCH: READ_BACK[1]}


@pytest.mark.parametrize(
    "moment",
    ["pooled", "unanswered", "connection-replaced", "another-worker"],
)
def test_a_read_in_flight_is_voided_when_the_order_is_unknown(moment: str) -> None:
    """pooled: the read may have gone on another connection, and run first. unanswered:
    the write may not have run yet (its caller was cancelled, or timed out), and the read
    may have been sent before it. connection-replaced: the write went on the connection
    (or tracking client) before the current one. another-worker: an invalidation from the
    listener, of a write on another connection."""
    cache, write_generation, read_generation = cache_with_a_read_in_flight(
        multiplexed=moment != "pooled"
    )
    if moment == "another-worker":
        cache.invalidate([RECORD])
    else:
        if moment == "connection-replaced":
            cache.generation += 1  # as _install_client or _connection_opened do
        answered = moment != "unanswered"
        cache.wrote([RECORD, EPOCH, INDEX], answered=answered, generation=write_generation)
    cache.end_read(READ_KEYS, READ_BACK, read_generation)
    assert RECORD not in cache.entries


async def test_one_session_written_by_requests_at_once_stays_cached(workers) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Sixteen requests write one session at once, each a key of its own: every write is
    kept, and on the multiplexed connection the read after them is served from the cache
    (a write that voided the others' reads would leave the session uncached)."""
    config, _ = workers
    cache = cache_of(config)
    async with asgi_client(config) as phone:
        await written_once(config, phone)
        writes = [phone.get(f"/set?key=k{i}&value={i}") for i in range(16)]
        assert {response.status_code for response in await asyncio.gather(*writes)} == {200}
        await wait_until(lambda: not cache._reading)
        hits = cache.hits
        data = (await phone.get("/read")).json()["data"]
        assert {k: data[k] for k in data if k.startswith("k")} == {
            f"k{i}": str(i) for i in range(16)
        }
        if cache.multiplexed:
            assert cache.hits == hits + 1, "the read after the writes went to Redis"


async def test_a_read_sent_before_a_write_cancelled_on_its_way_is_not_kept(
    key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read of the record is sent, then a write of it, on the same connection; Redis runs
    both, in that order, but their replies are not read yet. The write's request is
    cancelled: its reply never reaches it, so the cache cannot tell the read came first.
    What the read found (the value the write replaced) is not kept, and the next read has
    the write's value."""
    config = worker(key_prefix, multiplex=True)  # its replies can be held on the socket
    cache = await ready(config)
    async with asgi_client(config) as phone, asgi_client(config) as reader:
        await written_once(config, phone, reader)
        record_key = record_key_of(cache)
        tracking = cache.client()
        wire = tracking._wire  # type: ignore[union-attr]
        reads: list[asyncio.Future[object]] = []

        async def read_first() -> None:
            wire._transport.pause_reading()
            cache.entries.pop(record_key)
            reads.append(asyncio.ensure_future(reader.get("/read")))
            # the write is the first reader of the record in flight, this one the second
            await wait_until(lambda: cache._reading.get(record_key, [0])[0] == 2)

        held = at_the_first_write(monkeypatch, cache, read_first, answered=False)
        writing = asyncio.ensure_future(phone.get("/set?key=n&value=2"))
        await wait_until(lambda: bool(held) and wire.in_flight == 2 and not wire._out)
        writing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writing
        wire._transport.resume_reading()
        await reads[0]
        monkeypatch.undo()
        assert record_key not in cache.entries
        assert (await reader.get("/read")).json()["data"]["n"] == "2"
    await cache.aclose()


def apply_n(value: bytes) -> Callable[[list[Any]], list[Any]]:
    """A write that sets the field n to `value` (as end_write gets it)."""
    return lambda record: [*record[:1], value]


@pytest.mark.parametrize("multiplexed", [True, False], ids=["multiplexed", "pooled"])
def test_a_write_alone_in_flight_applies_its_change_to_the_copy(multiplexed: bool) -> None:
    cache = TrackedCache("redis://127.0.0.1:1", {}, max_entries=10, multiplexed=multiplexed)
    cache.healthy = True
    cache.entries[RECORD] = [b"n", b"1"]
    generation = cache.begin_read(READ_KEYS)
    cache.end_write(READ_KEYS, [RECORD, INDEX], generation, True, apply_n(b"2"))
    assert cache.entries[RECORD] == [b"n", b"2"]
    assert not cache._reading


def test_writes_on_a_pool_keep_no_copy_when_both_were_in_flight() -> None:
    """Two writes of one record in flight on a pool of connections, the second one's reply
    handled first: either may have run first, so neither write's change is applied to the
    copy, and none is kept. (On the multiplexed connection replies come in the order Redis
    ran the commands.)"""
    cache = TrackedCache("redis://127.0.0.1:1", {}, max_entries=10, multiplexed=False)
    cache.healthy = True
    cache.entries[RECORD] = [b"n", b"1"]
    first, second = cache.begin_read(READ_KEYS), cache.begin_read(READ_KEYS)
    cache.end_write(READ_KEYS, [RECORD, INDEX], second, True, apply_n(b"3"))
    cache.end_write(READ_KEYS, [RECORD, INDEX], first, True, apply_n(b"2"))
    assert RECORD not in cache.entries


@pytest.mark.parametrize("moment", ["unanswered", "refused", "invalidated", "not-cached"])
def test_a_write_keeps_no_copy_it_cannot_know(moment: str) -> None:
    """unanswered: the reply never came (whether the write ran is unknown). refused: it
    ran but did not write (no change to apply). invalidated: another worker changed the
    record meanwhile. not-cached: there was no copy to apply the change to."""
    cache = TrackedCache("redis://127.0.0.1:1", {}, max_entries=10, multiplexed=True)
    cache.healthy = True
    if moment != "not-cached":
        cache.entries[RECORD] = [b"n", b"1"]
    cache.entries[EPOCH] = b"e1"
    generation = cache.begin_read(READ_KEYS)
    if moment == "invalidated":
        cache.invalidate([RECORD])
    answered = moment != "unanswered"
    change = None if moment in ("unanswered", "refused") else apply_n(b"2")
    # as CachedRedis does: a write not applied drops the epoch's copy too
    written = [RECORD, INDEX] if change is not None else [RECORD, EPOCH, INDEX]
    cache.end_write(READ_KEYS, written, generation, answered, change)
    assert RECORD not in cache.entries
    assert (EPOCH in cache.entries) == (change is not None)
