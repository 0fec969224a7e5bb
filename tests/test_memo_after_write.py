"""A write teaches the decoded-record memo the record it leaves in Redis, so the session's
next read finds it there instead of decoding it again: on the real Redis, in both of a
hash's encodings (listpack, and a hash table once a value is over 64 bytes), encrypted or
not. What the memo learns is exactly what decoding the record would give, and a record
that anyone else changed in between is decoded afresh: the memo is keyed by the record's
every byte, never by a guess."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from session_middleware import SessionConfig, sessions
from session_middleware._core.steps import RedisIO
from session_middleware._protocol import records
from session_middleware._protocol.records import (
    Record,
    RecordReader,
    decode,
    refreshed_field,
    to_json,
)
from session_middleware._transport.round_trip import run_sync

from .support import REDIS_URL, SECRET, keys_under
from .support.http import asgi_client

pytestmark = pytest.mark.anyio

CIPHER_KEY = Fernet.generate_key().decode()
SHORT, LONG = "v", "x" * 100  # a hash of short values is a listpack; over 64 bytes, a table


@pytest.fixture(params=[None, CIPHER_KEY], ids=["plain", "encrypted"])
def encryption_key(request: pytest.FixtureRequest) -> str | None:
    return request.param  # type: ignore[no-any-return]


def worker(key_prefix: str, encryption_key: str | None) -> SessionConfig:
    """A worker process's configuration: a memo of its own."""
    return sessions(
        secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, encryption_key=encryption_key
    )


@pytest.fixture
def config(key_prefix: str, encryption_key: str | None) -> Iterator[SessionConfig]:
    config = worker(key_prefix, encryption_key)
    yield config
    config.redis.close()


@pytest.fixture
def other(key_prefix: str, encryption_key: str | None) -> Iterator[SessionConfig]:
    """A second worker serving the same sessions."""
    config = worker(key_prefix, encryption_key)
    yield config
    config.redis.close()


async def dark_with_a_count(client: httpx.AsyncClient) -> None:
    """Alice signed in, her session holding a theme and a count."""
    await client.get("/login?user=alice")
    await client.get("/set?key=theme&value=dark")
    await client.get("/set?key=count&value=1")


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many records were decoded (a memo miss each)."""
    count = [0]
    real = records.decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(records, "decode", counting)
    return count


def stored_record(prefix: str) -> tuple[list[bytes], str]:
    """The one session record under `prefix`: HGETALL's reply, flat, and its encoding."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        (key,) = [key for key in keys_under(prefix) if client.type(key) == b"hash"]
        flat = [item for pair in client.hgetall(key).items() for item in pair]
        return flat, client.object("encoding", key).decode()
    finally:
        client.close()


async def data_of(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    response = await client.get(path)
    assert response.status_code == 200
    return dict(json.loads(response.content)["data"])


@pytest.mark.parametrize("value", [SHORT, LONG], ids=["listpack", "hashtable"])
async def test_the_read_after_a_write_is_not_decoded_again(
    config: SessionConfig,
    key_prefix: str,
    encryption_key: str | None,
    decodes: list[int],
    value: str,
) -> None:
    async with asgi_client(config) as client:
        await client.get("/login?user=alice")
        await client.get(f"/set?key=theme&value={value}")  # a field added: not learned
        await client.get("/set?key=count&value=1")
        await client.get("/set?key=count&value=2")  # values replaced in place: learned
        flat, encoding = stored_record(key_prefix)
        if value == LONG or encryption_key:  # a Fernet token is over 64 bytes too
            assert encoding == "hashtable"
        else:
            assert encoding in ("listpack", "ziplist")  # ziplist: Redis 6
        assert tuple(flat) in config.core.records._known
        decodes[0] = 0
        assert await data_of(client, "/read") == {"theme": value, "count": "2"}
        assert decodes[0] == 0, "the record the write left was in the memo"


async def test_a_write_that_adds_or_deletes_a_key_is_decoded_on_the_next_read(
    config: SessionConfig, key_prefix: str, decodes: list[int]
) -> None:
    """Where Redis puts a new field is its own business: such a record is read afresh."""
    async with asgi_client(config) as client:
        await client.get("/login?user=alice")
        await client.get("/set?key=theme&value=dark")
        decodes[0] = 0
        assert await data_of(client, "/read") == {"theme": "dark"}
        assert decodes[0] == 1
        await client.get("/append?value=a")  # adds "items"
        decodes[0] = 0
        assert await data_of(client, "/read") == {"theme": "dark", "items": ["a"]}
        assert decodes[0] == 1
        await client.get("/clear")
        assert await data_of(client, "/read") == {}


async def test_another_workers_write_in_between_is_read(
    config: SessionConfig, other: SessionConfig, key_prefix: str
) -> None:
    """Worker one learns the record its write left; worker two (a memo of its own) then
    changes it; worker one's next read gets worker two's record, not what it learned."""
    async with asgi_client(config) as one:
        await dark_with_a_count(one)
        await one.get("/set?key=count&value=2")
        learned = stored_record(key_prefix)[0]
        assert tuple(learned) in config.core.records._known
        async with asgi_client(other, one.cookies["session"]) as two:
            assert await data_of(two, "/set?key=theme&value=light") == {
                "theme": "light",
                "count": "2",
            }
        assert await data_of(one, "/read") == {"theme": "light", "count": "2"}


# -- what the memo learns is what decoding would give ------------------------------------

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
keys = st.text(min_size=1, max_size=6)
CIPHER = Fernet(CIPHER_KEY.encode())


def loaded_record(data: dict[str, Any], user: Any, unknown: dict[str, str]) -> Record:
    now = time.time()
    return Record(
        stored={key: to_json(value) for key, value in data.items()},
        created=now - 100,
        expires=now + 100,
        refreshed=now - 50,
        user_id=user,
        epoch=None if user is None else "e" * 32,
        extra={"ua": "a browser"},
        unknown=unknown,  # a later release's metadata
    )


def learn(
    reader: RecordReader, loaded: Record, changes: dict[str, Any]
) -> tuple[list[bytes], list[str], dict[tuple[Any, ...], Record]]:
    """Read `loaded` as Redis would send it, write `changes` to it: the reply read, the
    pairs the write sent, and what the memo learned."""
    codec = reader.codec
    flat = [item.encode() for item in codec.fields(loaded)]
    record = reader.read(flat)
    changed = [(key, to_json(value)) for key, value in changes.items()]
    pairs = codec.data_fields(changed, refreshed_field(time.time()))
    before = dict(reader._known)
    reader.written(flat, record, pairs, changed)
    return flat, pairs, {key: found for key, found in reader._known.items() if key not in before}


@settings(max_examples=300, deadline=None)
@given(
    data=st.dictionaries(keys, values, min_size=1, max_size=6),
    picked=st.data(),
    added=st.dictionaries(keys, values, max_size=1),
    encrypted=st.booleans(),
    user=st.sampled_from([None, "alice", 42]),
    unknown=st.dictionaries(st.sampled_from(["z", "y9"]), st.text(max_size=5), max_size=2),
)
def test_what_a_write_teaches_is_what_decoding_gives(
    data: dict[str, Any],
    picked: st.DataObject,
    added: dict[str, Any],
    encrypted: bool,
    user: Any,
    unknown: dict[str, str],
) -> None:
    reader = RecordReader(CIPHER if encrypted else None)
    replaced = {
        key: picked.draw(values.filter(lambda new, old=old: to_json(new) != to_json(old)))
        for key, old in data.items()
        if picked.draw(st.booleans())
    }
    changes = {**replaced, **added}
    loaded = loaded_record(data, user, unknown)
    flat, pairs, learned = learn(reader, loaded, changes)
    if not set(changes) <= set(data):
        assert learned == {}, "a field added: where it goes is Redis's to choose"
        return
    ((key, found),) = learned.items()
    sent = dict(zip(pairs[::2], pairs[1::2], strict=True))
    as_stored = [
        item if i % 2 == 0 else sent.get(flat[i - 1].decode(), item.decode()).encode()
        for i, item in enumerate(flat)
    ]
    assert list(key) == as_stored, "the reply as Redis holds it after the write"
    assert found == decode(as_stored, reader.codec)
    assert found.unknown == unknown  # a later release's field 'z' is not a data key 'z'
    assert {k: found.value(k) for k in found.stored} == {**data, **changes}


def test_a_record_the_read_does_not_keep_teaches_nothing() -> None:
    """A read looks up only records of at most max_length bytes that decoded within
    max_bytes: a write learns no other, and a small record read often stays found."""
    reader = RecordReader(CIPHER, max_bytes=64 * 1024)
    small = loaded_record({"theme": "dark"}, "alice", {})
    small_flat, _, learned = learn(reader, small, {"theme": "light"})
    assert len(learned) == 1
    for n in range(reader.max_entries + 10):  # large encrypted records, value by value
        large = loaded_record({f"k{i}": "x" * 100 for i in range(12)}, "alice", {})
        _, _, learned = learn(reader, large, {"k0": f"y{n}"})
        assert learned == {}
    assert tuple(small_flat) in reader._known


@pytest.mark.parametrize("limit", ["max_length", "max_bytes"])
def test_a_write_that_grows_a_record_past_a_limit_teaches_nothing(limit: str) -> None:
    reader = RecordReader(None, max_bytes=400 if limit == "max_bytes" else None)
    loaded = loaded_record({"note": "x" * 10}, "alice", {})
    _, _, learned = learn(reader, loaded, {"note": "x" * (2048 if limit == "max_length" else 500)})
    assert learned == {}
    _, _, learned = learn(reader, loaded, {"note": "y" * 10})
    assert len(learned) == 1, "the same write within the limits is learned"


async def test_a_large_session_written_value_by_value_reads_back(
    config: SessionConfig, key_prefix: str, encryption_key: str | None
) -> None:
    """A session over 2 KB (its values decoded one by one when not encrypted): a write that
    only replaces a value answers, and the next read has it."""
    async with asgi_client(config) as client:
        await client.get("/login?user=alice")
        for n in range(4):
            await client.get(f"/set?key=k{n}&value={'x' * 700}")
        assert (await client.get("/set?key=k0&value=short")).status_code == 200
        data = await data_of(client, "/read")
        assert data["k0"] == "short" and data["k3"] == "x" * 700


def test_a_memo_of_longer_records_learns_no_lazily_decoded_one() -> None:
    """A record over 2 KB keeps its values as received (decoded when read): a memo that
    holds such records (a max_length above 2 KB) does not follow their writes."""
    reader = RecordReader(None, max_length=8192)
    loaded = loaded_record({f"k{i}": "x" * 1000 for i in range(3)}, "alice", {})
    _, _, learned = learn(reader, loaded, {"k0": "y" * 1000})
    assert learned == {}


def drive(config: SessionConfig, step: Any) -> Any:
    """Run one of the core's steps on the real Redis (the core is sans-IO)."""
    client = config.redis.sync()
    try:
        request = next(step)
        while True:
            if isinstance(request, RedisIO):
                request = step.send(run_sync(client, request.commands, request.errors_as_replies))
            else:
                request = step.send(None)
    except StopIteration as done:
        return done.value


async def test_a_write_held_while_another_changes_the_session_learns_nothing_stale(
    config: SessionConfig, other: SessionConfig, decodes: list[int]
) -> None:
    """Worker one loads the session and holds; worker two changes a key; worker one then
    writes another key. The reply worker one predicts is not what Redis holds: its next
    read decodes the record as stored, with both writes in it."""
    async with asgi_client(config) as one:
        await dark_with_a_count(one)
        header = f"session={one.cookies['session']}"
        opened = drive(config, config.core.open(header, time.time()))
        async with asgi_client(other, one.cookies["session"]) as two:
            await two.get("/set?key=theme&value=light")
        opened.session["count"] = "2"
        committed = drive(config, config.core.commit(opened, time.time()))
        assert committed.interrupted is None
        decodes[0] = 0
        assert await data_of(one, "/read") == {"theme": "light", "count": "2"}
        assert decodes[0] == 1, "decoded: what worker one had learned did not match"
