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
from session_middleware._protocol import records
from session_middleware._protocol.records import (
    FieldCodec,
    Record,
    RecordReader,
    decode,
    refreshed_field,
    to_json,
)

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
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many records were decoded (a memo miss each)."""
    count = [0]
    real = records.decode_parts

    def counting(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(records, "decode_parts", counting)
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
    config: SessionConfig, key_prefix: str, encryption_key: str | None
) -> None:
    """Worker one learns the record its write left; worker two (a memo of its own) then
    changes it; worker one's next read gets worker two's record, not what it learned."""
    other = worker(key_prefix, encryption_key)
    try:
        async with asgi_client(config) as one:
            await one.get("/login?user=alice")
            await one.get("/set?key=theme&value=dark")
            await one.get("/set?key=count&value=1")
            await one.get("/set?key=count&value=2")
            learned = stored_record(key_prefix)[0]
            assert tuple(learned) in config.core.records._known
            async with asgi_client(other, one.cookies["session"]) as two:
                assert await data_of(two, "/set?key=theme&value=light") == {
                    "theme": "light",
                    "count": "2",
                }
            assert await data_of(one, "/read") == {"theme": "light", "count": "2"}
    finally:
        other.redis.close()


# -- what the memo learns is what decoding would give ------------------------------------

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
keys = st.text(min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(
    data=st.dictionaries(keys, values, min_size=1, max_size=6),
    changes=st.dictionaries(keys, values, max_size=4),
    encrypted=st.booleans(),
    user=st.sampled_from([None, "alice", 42]),
)
def test_what_a_write_teaches_is_what_decoding_gives(
    data: dict[str, Any], changes: dict[str, Any], encrypted: bool, user: Any
) -> None:
    cipher = Fernet(CIPHER_KEY.encode()) if encrypted else None
    codec = FieldCodec(cipher)
    now = time.time()
    loaded = Record(
        stored={key: to_json(value) for key, value in data.items()},
        created=now - 100,
        expires=now + 100,
        refreshed=now - 50,
        user_id=user,
        epoch=None if user is None else "e" * 32,
        extra={"ua": "a browser"},
    )
    flat = [item.encode() for item in codec.fields(loaded)]
    reader = RecordReader(cipher)
    record = reader.read(flat)
    changed = [(key, to_json(value)) for key, value in changes.items()]
    pairs = codec.data_fields(changed, refreshed_field(now))
    before = dict(reader._known)
    reader.written(flat, record, pairs, changed)
    learned = {key: found for key, found in reader._known.items() if key not in before}
    if not set(changes) <= set(data):
        assert learned == {}, "a field added: its place is Redis's to choose"
        return
    ((key, found),) = learned.items()
    named = dict(zip(pairs[::2], pairs[1::2], strict=True))
    as_stored = [
        item if i % 2 == 0 else named.get(flat[i - 1].decode(), item.decode()).encode()
        for i, item in enumerate(flat)
    ]
    assert list(key) == as_stored, "the record as sent, every field where it was"
    assert found == decode(as_stored, codec)
    assert dict(found.stored) == {**loaded.stored, **dict(changed)}
