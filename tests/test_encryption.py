"""Optional encryption at rest: Redis holds ciphertext; keys rotate; a wrong key fails closed."""

from __future__ import annotations

import pytest
import redis
from cryptography.fernet import Fernet

from session_middleware import ConfigurationError, SessionConfig, sessions

from .support import REDIS_URL, SECRET, keys_under
from .support.apps import asgi_app
from .support.http import asgi_client_of

pytestmark = pytest.mark.anyio


async def test_records_are_encrypted_at_rest_and_keys_rotate(key_prefix: str) -> None:
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    old = sessions(
        secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, encryption_key=old_key
    )
    async with asgi_client_of(old(asgi_app)) as client:
        await client.get("/login?user=alice")
        await client.get("/set?key=card&value=4111-1111")
        cookie = client.cookies["session"]
    (key,) = [k for k in keys_under(key_prefix) if ":s:" in k]
    stored = redis.Redis.from_url(REDIS_URL).hgetall(key)
    assert not [item for pair in stored.items() for item in pair if b"4111" in item]
    assert not [value for value in stored.values() if b"alice" in value]
    assert stored[b"d:card"].startswith(b"gAAAA") and stored[b"u"].startswith(b"gAAAA")

    rotated = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        encryption_key=[new_key, old_key],
    )
    async with asgi_client_of(rotated(asgi_app)) as client:
        client.cookies.set("session", cookie)
        body = (await client.get("/read")).json()
        assert body["user"] == "alice" and body["data"] == {"card": "4111-1111"}
        await rotated.ainvalidate_user("alice")
        assert (await client.get("/read")).json()["rejected"] == "epoch"


def with_new_key(key_prefix: str) -> SessionConfig:
    """A configuration encrypting with a key of its own."""
    return sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        encryption_key=Fernet.generate_key(),
    )


async def test_a_session_key_holding_a_nul_reads_back_encrypted(key_prefix: str) -> None:
    """A value is sealed with its field's name, NUL, its JSON: a key may hold a NUL too."""
    async with asgi_client_of(with_new_key(key_prefix)(asgi_app)) as client:
        await client.get("/login?user=alice")
        await client.get("/set?key=%00a%00&value=v")
        await client.get("/set?key=b&value=w")
        body = (await client.get("/read")).json()
        assert body["user"] == "alice" and body["data"] == {"\x00a\x00": "v", "b": "w"}


async def test_a_record_that_cannot_be_decrypted_is_dropped(key_prefix: str) -> None:
    async with asgi_client_of(with_new_key(key_prefix)(asgi_app)) as client:
        await client.get("/login?user=alice")
        cookie = client.cookies["session"]
    for reader in (
        with_new_key(key_prefix),
        sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix),
    ):
        async with asgi_client_of(reader(asgi_app)) as client:
            client.cookies.set("session", cookie)
            assert (await client.get("/read")).json()["user"] is None


def test_a_bad_encryption_key_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigurationError, match="Fernet"):
        sessions(secret_key=SECRET, encryption_key="not-a-fernet-key")
