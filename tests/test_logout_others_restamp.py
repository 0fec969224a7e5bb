"""logout_others against a real Redis, with a request of the same session placed between
the commit's round trips: the epoch bump re-stamps the asking session in the same script,
so no request of it finds the epoch new and its stamp old.

The commit is run here one round trip at a time (the core is sans-IO: this is its runner)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from session_middleware import SessionConfig, sessions
from session_middleware._core.steps import Emit, RedisIO
from session_middleware._transport.round_trip import run_sync

from .support import REDIS_URL, SECRET
from .support.apps import wsgi_app
from .support.counting import command_name
from .support.http import cookie_of, wsgi_call


@pytest.fixture
def config(key_prefix: str) -> Any:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    yield config
    config.redis.close()


def log_in(config: SessionConfig, user: str = "alice") -> str:
    return f"session={cookie_of(wsgi_call(config(wsgi_app), f'/login?user={user}')[1])}"


def read(config: SessionConfig, header: str) -> Any:
    """Who a request with this cookie is signed in as, after any clean-up it does."""
    return wsgi_call(config(wsgi_app), "/read", header)[2]["user"]


def commit_pausing_after_bump(
    config: SessionConfig, opened: Any, between: Callable[[], None]
) -> Any:
    """Core.commit on the real Redis, `between` run right after the round trip that bumps
    the epoch and before the next one."""
    step = config.core.commit(opened, time.time())
    client = config.redis.sync()
    bumped = False
    try:
        request = next(step)
        while True:
            if isinstance(request, Emit):
                request = step.send(None)
                continue
            assert isinstance(request, RedisIO)  # one Redis here: the epochs are on it too
            if bumped:
                between()
                bumped = False
            names = [command_name(command) for command in request.commands]
            replies = run_sync(client, list(request.commands), request.errors_as_replies)
            bumped = "BUMP_IF" in names
            request = step.send(replies)
    except StopIteration as done:
        return done.value


def test_a_read_of_the_same_session_between_bump_and_restamp_keeps_it_signed_in(
    config: SessionConfig,
) -> None:
    phone, laptop, tablet = log_in(config), log_in(config), log_in(config)
    opened = config.run_sync(config.core.open(phone, time.time()))
    opened.session.logout_others()
    seen: list[Any] = []
    committed = commit_pausing_after_bump(config, opened, lambda: seen.append(read(config, phone)))
    assert seen == ["alice"], "the concurrent read of the asking session is served"
    assert committed.interrupted is None and committed.rejected is None
    header = phone
    if committed.set_cookie:
        header = f"session={cookie_of({'set-cookie': committed.set_cookie})}"
    assert read(config, header) == "alice", "the device that logged the others out stays"
    assert read(config, laptop) is None and read(config, tablet) is None
