"""The server ends a session at its absolute lifetime and after its idle timeout, whatever
the cookie says, and refreshes a sliding expiry at most once per interval."""

from __future__ import annotations

import pytest
import redis

import session_middleware._request_cycle as request_cycle
from session_middleware import sessions

from .support import REDIS_URL, SECRET, keys_under
from .support.apps import wsgi_app
from .support.clock import clock_of
from .support.http import logged_in_cookie, read_with, set_cookie_attributes, wsgi_call
from .support.stored import session_keys
from .support.waiting import until

pytestmark = pytest.mark.anyio


async def test_absolute_lifetime_is_enforced_by_the_server(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, max_age=60)
    cookie = await logged_in_cookie(config)
    (key,) = session_keys(key_prefix)
    plain = redis.Redis.from_url(REDIS_URL)
    assert 0 < plain.pttl(key) <= 60_000
    plain.hset(key, "x", "1")  # an absolute expiry long past; the TTL stays
    response = await read_with(config, f"session={cookie}")
    assert response.json()["user"] is None
    assert session_keys(key_prefix) == []


async def test_idle_timeout_expires_an_unused_session(key_prefix: str) -> None:
    """The real TTL: Redis drops the record once it has not been used for idle_timeout."""
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, idle_timeout=1)
    cookie = await logged_in_cookie(config)
    (key,) = session_keys(key_prefix)
    plain = redis.Redis.from_url(REDIS_URL)
    assert 0 < plain.pttl(key) <= 1000
    await until(lambda: not plain.exists(key), "Redis to expire the idle session")
    assert (await read_with(config, f"session={cookie}")).json()["user"] is None


async def test_the_server_ends_an_idle_session_whose_key_is_still_there(
    key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = clock_of(monkeypatch, request_cycle)
    config = sessions(
        secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, idle_timeout=60
    )
    cookie = await logged_in_cookie(config)
    assert (await read_with(config, f"session={cookie}")).json()["user"] == "alice"
    later.advance(61)
    assert session_keys(key_prefix) != []  # Redis has yet to expire it
    assert (await read_with(config, f"session={cookie}")).json()["user"] is None


async def test_sliding_refresh_writes_at_most_once_per_interval(
    key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = clock_of(monkeypatch, request_cycle)
    config = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        idle_timeout=3600,
        refresh_interval=1,
    )
    cookie = await logged_in_cookie(config)
    (key,) = session_keys(key_prefix)
    plain = redis.Redis.from_url(REDIS_URL)
    plain.pexpire(key, 100_000)
    for _ in range(3):
        await read_with(config, f"session={cookie}")
    assert plain.pttl(key) <= 100_000, "no refresh within the interval"
    later.advance(1.05)
    await read_with(config, f"session={cookie}")
    assert plain.pttl(key) > 3_000_000, "refreshed once the interval passed"


def test_a_browser_session_cookie_has_no_lifetime_but_the_server_still_ends_it(
    key_prefix: str,
) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, max_age=None)
    _, headers, _ = wsgi_call(config(wsgi_app), "/login?user=alice")
    _, attributes = set_cookie_attributes(headers["set-cookie"])
    assert not any(a.startswith(("max-age", "expires")) for a in attributes)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        ttls = [client.pttl(key) for key in keys_under(key_prefix) if ":s:" in key]
    finally:
        client.close()
    assert len(ttls) == 1 and 0 < ttls[0] <= 14 * 24 * 3600 * 1000
    config.redis.close()
