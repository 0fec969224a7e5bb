"""Workers with local_cache: their cache, and waiting until its listener has proven itself."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from session_middleware import SessionConfig
from session_middleware._transport.local_cache import TrackedCache


def cache_of(config: SessionConfig) -> TrackedCache:
    cache: TrackedCache = config.redis.async_().cache
    return cache


async def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> float:
    start = time.perf_counter()
    while not condition():
        assert time.perf_counter() - start < seconds, "the cache never caught up"
        await asyncio.sleep(0.001)
    return time.perf_counter() - start


async def ready(config: SessionConfig) -> TrackedCache:
    """The worker's cache once its listener is subscribed and has proven itself alive."""
    cache = cache_of(config)
    cache.client()
    await wait_until(lambda: cache.healthy and time.monotonic() - cache.proven_at < cache.max_lag)
    return cache


@contextlib.contextmanager
def listener_late(cache: TrackedCache) -> Iterator[None]:
    """The invalidations the listener thread receives are held until the block ends (a
    listener that lags behind), then applied: what the cache drops meanwhile, it dropped
    on its own."""
    held: list[Any] = []
    applied = cache.invalidate

    def invalidate(keys: Any) -> None:
        if threading.current_thread().name == "session-cache-listener":
            held.append(keys)
        else:
            applied(keys)

    cache.invalidate = invalidate  # type: ignore[method-assign]
    try:
        yield
    finally:
        del cache.invalidate
        for keys in held:
            applied(keys)
