"""Reading and planting what Redis holds, with clients of their own: records, epochs and
keys of the wrong type."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis

from session_middleware import SessionConfig

from . import REDIS_URL, keys_under


def record_key(config: SessionConfig, cookie: str) -> str:
    tag, session_id, _ = cookie.split(".")
    return config.keys.session_key(tag, session_id)


def redis_get(key: str) -> str:
    """A string key's value as text (an epoch), read with a client of its own."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        value = client.get(key)
    finally:
        client.close()
    assert isinstance(value, bytes), f"nothing at {key}"
    return value.decode()


def redis_hash(key: str) -> dict[str, str]:
    """A session record's fields as text, read with a client of its own."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        fields = client.hgetall(key)
    finally:
        client.close()
    assert fields, f"no record at {key}"
    return {name.decode(): value.decode() for name, value in fields.items()}


Planted = Mapping[str | bytes, str | bytes] | str | bytes | list[bytes]


def redis_plant(key: str, value: Planted) -> None:
    """Replace whatever is at a key, keeping its TTL: a mapping is planted as a hash (as
    records are), a string as a string key, a list as a list key."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        ttl = client.pttl(key)
        with client.pipeline() as pipe:
            pipe.delete(key)
            if isinstance(value, Mapping):
                if value:
                    pipe.hset(key, mapping=dict(value))
            elif isinstance(value, list):
                pipe.rpush(key, *value)
            else:
                pipe.set(key, value)
            if ttl > 0:
                pipe.pexpire(key, ttl)
            pipe.execute()
    finally:
        client.close()


def redis_edit(key: str, changes: Mapping[str, str | bytes], removed: Sequence[str] = ()) -> None:
    """HSET (and HDEL) some fields of a record in place."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        if changes:
            client.hset(key, mapping=dict(changes))
        if removed:
            client.hdel(key, *removed)
    finally:
        client.close()


def redis_exists(key: str) -> bool:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return bool(client.exists(key))
    finally:
        client.close()


def session_keys(prefix: str) -> list[str]:
    return [k for k in keys_under(prefix) if ":s:" in k]
