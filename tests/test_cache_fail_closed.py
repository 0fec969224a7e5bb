"""The local cache never serves a session Redis would refuse: not during a silent partition,
not while Redis is frozen, not at start-up without Redis, not behind a busy event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from session_middleware import ConfigurationError, SessionConfig, sessions
from session_middleware.testing import FreezingProxy

from .support import SECRET
from .support.http import asgi_client
from .support.local_cache import cache_of, ready
from .support.redis_servers import HOST, RedisServer, free_port, server

__all__ = ["server"]  # the fixture

pytestmark = pytest.mark.anyio

MAX_LAG = 0.3  # local_cache_max_lag of these workers
TIMEOUT = 0.5  # their redis_timeout
BOUND = 10.0  # no request of these tests may take this long


@pytest.fixture
def proxy(server: RedisServer) -> Iterator[FreezingProxy]:
    proxy = FreezingProxy(HOST, server.port).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def cached_worker(url: str, prefix: str) -> SessionConfig:
    return sessions(
        secret_key=SECRET,
        redis_url=url,
        key_prefix=prefix,
        local_cache=100,
        local_cache_max_lag=MAX_LAG,
        redis_timeout=TIMEOUT,
    )


def plain_worker(url: str, prefix: str) -> SessionConfig:
    """Another process's configuration: no cache, straight to Redis."""
    return sessions(secret_key=SECRET, redis_url=url, key_prefix=prefix, redis_timeout=TIMEOUT)


@pytest.fixture
async def closing() -> AsyncIterator[list[SessionConfig]]:
    configs: list[SessionConfig] = []
    yield configs
    for config in configs:
        await config.aclose()


async def started(url: str, prefix: str, closing: list[SessionConfig]) -> SessionConfig:
    """A cached worker on `url`, closed after the test, once its listener is ready."""
    config = cached_worker(url, prefix)
    closing.append(config)
    await ready(config)
    return config


async def get(client: httpx.AsyncClient, path: str = "/read") -> httpx.Response:
    return await asyncio.wait_for(client.get(path), BOUND)


async def log_in_and_cache(client: httpx.AsyncClient, config: SessionConfig) -> None:
    await get(client, "/login?user=alice")
    await get(client)
    hits = cache_of(config).hits
    assert (await get(client)).json()["user"] == "alice"
    assert cache_of(config).hits == hits + 1, "the session is served from the cache"


@pytest.fixture
async def alice(  # type: ignore[no-untyped-def]
    server, key_prefix, closing
) -> AsyncIterator[tuple[SessionConfig, httpx.AsyncClient]]:
    """A cached worker on the private server, and a browser whose session it has cached."""
    here = await started(server.url, key_prefix, closing)
    async with asgi_client(here) as client:
        await log_in_and_cache(client, here)
        yield here, client


async def test_a_silent_partition_stops_cached_sessions_within_the_bound(  # type: ignore[no-untyped-def]
    server, proxy, key_prefix, closing
) -> None:
    here = await started(proxy.url, key_prefix, closing)
    async with asgi_client(here) as client:
        await log_in_and_cache(client, here)
        proxy.freeze()
        plain_worker(server.url, key_prefix).invalidate_user("alice")
        await asyncio.sleep(MAX_LAG)  # the longest the cache may still answer
        response = await get(client)
        assert response.status_code == 503, "no session is served unverified"
        cache = cache_of(here)
        assert not cache.entries
        # Two clocks drop the cache, whichever runs out first: the read finding the proof
        # older than MAX_LAG (distrusted), or the listener's PING unanswered for TIMEOUT.
        assert cache.distrusted >= 1 or not cache.healthy
        proxy.thaw()
        await ready(here)
        response = await get(client)
        assert response.json() == {"user": None, "rejected": "epoch", "data": {}}


async def test_a_frozen_redis_stops_cached_sessions_within_the_bound(  # type: ignore[no-untyped-def]
    server, alice
) -> None:
    here, client = alice
    server.pause()
    try:
        await asyncio.sleep(MAX_LAG)
        assert (await get(client)).status_code == 503
    finally:
        server.resume()
    await ready(here)
    assert (await get(client)).json()["user"] == "alice"


async def test_an_idle_cache_stays_in_use_while_its_listener_answers(  # type: ignore[no-untyped-def]
    server, alice
) -> None:
    here, client = alice
    await asyncio.sleep(3 * MAX_LAG)  # idle: only the listener's PINGs keep the proof
    hits = cache_of(here).hits
    assert (await get(client)).json()["user"] == "alice"
    assert cache_of(here).hits == hits + 1


async def test_a_worker_started_while_redis_is_down_answers_503(  # type: ignore[no-untyped-def]
    server, key_prefix, closing
) -> None:
    async with asgi_client(plain_worker(server.url, key_prefix)) as client:
        await get(client, "/login?user=alice")
        cookie = client.cookies["session"]
    nowhere = cached_worker(f"redis://{HOST}:{free_port()}/0", key_prefix)
    closing.append(nowhere)
    async with asgi_client(nowhere, cookie) as client:
        for _ in range(3):
            assert (await get(client)).status_code == 503

    server.pause()
    try:
        frozen = cached_worker(server.url, key_prefix)
        closing.append(frozen)
        async with asgi_client(frozen, cookie) as client:
            assert (await get(client)).status_code == 503
    finally:
        server.resume()
    await ready(frozen)
    async with asgi_client(frozen, cookie) as client:
        assert (await get(client)).json()["user"] == "alice"


async def test_an_invalidation_is_applied_while_the_event_loop_is_busy(  # type: ignore[no-untyped-def]
    server, key_prefix, alice
) -> None:
    here, _ = alice
    epoch_key = here.keys.epoch_key(here.keys.user_tag("alice"))
    cache = cache_of(here)
    assert epoch_key in cache.entries
    plain_worker(server.url, key_prefix).invalidate_user("alice")
    # A handler burning CPU: the event loop does not run until it is done.
    busy_until = time.monotonic() + 3.0
    while epoch_key in cache.entries and time.monotonic() < busy_until:
        sum(range(1000))
    assert epoch_key not in cache.entries, "dropped while the event loop was busy"


def test_the_cache_and_websocket_settings_are_validated() -> None:
    for settings in (
        {"local_cache": 10, "local_cache_max_lag": 0},
        {"local_cache": 10, "local_cache_max_lag": 120},
        {"websocket_recheck": 0},
    ):
        with pytest.raises(ConfigurationError):
            sessions(secret_key=SECRET, **settings)  # type: ignore[arg-type]


async def test_a_tracking_connection_closed_by_redis_drops_the_cache(  # type: ignore[no-untyped-def]
    server, key_prefix, alice
) -> None:
    _, client = alice
    with server.client(decode_responses=True) as admin:
        tracking = [c["id"] for c in admin.client_list() if "t" in c["flags"]]
        assert tracking, "the cache reads through tracking connections"
        for client_id in tracking:  # as Redis's `timeout` does to idle clients
            admin.client_kill_filter(_id=client_id)
    plain_worker(server.url, key_prefix).invalidate_user("alice")
    await asyncio.sleep(MAX_LAG)  # no request used, and so noticed, the closed connections
    assert (await get(client)).json()["rejected"] == "epoch"
