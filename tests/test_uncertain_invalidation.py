"""An invalidate_user that times out may still take effect: the error says so, stays a
redis-py TimeoutError (what callers catch, and what the 503 handling maps), and a retry
is safe."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis

from session_middleware import InvalidationUncertain, SessionConfig, StoreUnavailable, sessions
from session_middleware._fail_closed import FAILURES

from .support import SECRET, new_prefix
from .support.redis_servers import RedisServer, server
from .support.stories import browsers_for

__all__ = ["server"]  # the fixture

USER = "user-42"
# invalidate_user must give up long before this; the test waits no longer for it.
HUNG_DEADLINE = 300.0
WAIT_FOR_RAISE = 30.0


def _config(server: RedisServer) -> SessionConfig:
    # A failed attempt is made again until invalidate_deadline: two attempts here.
    return sessions(
        secret_key=SECRET, redis_url=server.url, redis_timeout=0.5, invalidate_deadline=0.8
    )


def _epoch(server: RedisServer, config: SessionConfig) -> bytes | None:
    with server.client() as admin:
        value = admin.get(config.keys.epoch_key(config.keys.user_tag(USER)))
        return value if value is None else bytes(value)


def _wait_for_change(server: RedisServer, config: SessionConfig, before: bytes | None) -> None:
    deadline = time.monotonic() + 10
    while _epoch(server, config) == before and time.monotonic() < deadline:
        time.sleep(0.05)


def _check_uncertain(error: BaseException, name: str) -> None:
    # Caught by what callers catch today, and by the 503 handling of the integrations.
    assert isinstance(error, StoreUnavailable) and isinstance(error, FAILURES)
    assert isinstance(error.__cause__, redis.exceptions.TimeoutError)
    message = str(error)
    assert name in message
    assert "may have taken effect" in message
    assert "retry" in message


@pytest.mark.parametrize("delete", [False, True])
def test_a_timed_out_invalidation_says_it_may_have_happened_and_it_did(
    server: RedisServer, delete: bool
) -> None:
    config = _config(server)
    config.invalidate_user(USER)
    before = _epoch(server, config)
    assert before is not None

    server.pause()
    try:
        with pytest.raises(InvalidationUncertain) as caught:
            config.invalidate_user(USER, delete=delete)
    finally:
        server.resume()
    _check_uncertain(caught.value, "invalidate_user")

    # The frozen Redis applied the bump once it ran again: it did take effect.
    _wait_for_change(server, config, before)
    after = _epoch(server, config)
    assert after is not None and after != before
    # Retrying, as the message says, is safe: one more new epoch.
    config.invalidate_user(USER, delete=delete)
    assert _epoch(server, config) not in (before, after)
    config.close()


def test_the_async_twin_says_the_same(server: RedisServer) -> None:
    config = _config(server)

    async def frozen_invalidation() -> tuple[bytes | None, BaseException]:
        await config.ainvalidate_user(USER)  # opens the pooled connection
        before = _epoch(server, config)
        server.pause()
        try:
            with pytest.raises(InvalidationUncertain) as caught:
                await asyncio.wait_for(config.ainvalidate_user(USER), 10)
        finally:
            server.resume()
        await config.aclose()
        return before, caught.value

    before, error = asyncio.run(frozen_invalidation())
    _check_uncertain(error, "ainvalidate_user")
    _wait_for_change(server, config, before)
    assert _epoch(server, config) != before


@pytest.mark.anyio
async def test_a_hung_single_redis_fails_invalidate_user_after_one_timeout(
    server: RedisServer,
) -> None:
    config = sessions(
        secret_key=SECRET,
        redis_url=server.url,
        key_prefix=new_prefix(),
        redis_timeout=0.5,
        invalidate_deadline=HUNG_DEADLINE,
    )
    browser = browsers_for(config, "asgi")()
    await browser.ok("POST", "/login?user=alice")
    server.pause()
    try:
        raised: list[BaseException] = []
        took: list[float] = []

        def invalidate() -> None:
            start = time.monotonic()
            try:
                config.invalidate_user("alice")
            except BaseException as error:
                raised.append(error)
            took.append(time.monotonic() - start)

        thread = threading.Thread(target=invalidate, daemon=True)
        thread.start()
        await asyncio.to_thread(thread.join, WAIT_FOR_RAISE)
        assert not thread.is_alive(), "invalidate_user still waits on a hung Redis"
        start = time.monotonic()
        with pytest.raises(InvalidationUncertain):
            await asyncio.wait_for(config.ainvalidate_user("alice"), WAIT_FOR_RAISE)
        took.append(time.monotonic() - start)
        assert len(raised) == 1 and isinstance(raised[0], InvalidationUncertain)
        print(f"\nhung single Redis, redis_timeout 0.5: raised after {took} s")
    finally:
        server.resume()
    await browser.close()
    config.redis.close()
    await config.redis.aclose()
