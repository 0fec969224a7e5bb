from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from session_middleware import SessionConfig, sessions

from .support import REDIS_URL, SECRET, delete_prefix, new_prefix

# What runs without Redis: the core's specification, and lint, format and typing.
WITHOUT_REDIS = ("tests/spec/", "tests/test_quality.py")
_no_redis: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        _no_redis.append(f"no Redis server answers at {REDIS_URL}: {error}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without Redis, run what needs none and skip the rest, saying why."""
    if not _no_redis:
        return
    skip = pytest.mark.skip(reason=_no_redis[0])
    root = config.rootpath
    for item in items:
        path = item.path.relative_to(root).as_posix()
        if not path.startswith(WITHOUT_REDIS):
            item.add_marker(skip)


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
