"""A pytest fixture: a private redis-server for one test, that the test may freeze."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .redis_servers import RedisServer, standalone


@pytest.fixture
def server() -> Iterator[RedisServer]:
    group, server = standalone()
    try:
        yield server
    finally:
        group.stop()
