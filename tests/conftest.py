from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from session_middleware import SessionConfig, sessions

from .support import REDIS_URL, SECRET, delete_prefix, new_prefix


def pytest_configure(config: pytest.Config) -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        raise pytest.UsageError(f"the tests need a Redis server at {REDIS_URL}: {error}") from None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def key_prefix() -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = new_prefix()
    yield prefix
    delete_prefix(prefix)


@pytest.fixture
def config(key_prefix: str) -> SessionConfig:
    return sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
