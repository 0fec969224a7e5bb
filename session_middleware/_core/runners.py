"""Running the core's steps: the only place where its requests meet real I/O."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeVar

from .._redis.clients import REDIS_ERRORS, RedisClients
from .._redis.round_trip import run_async, run_sync
from ..epochs.base import EpochProvider
from ..errors import SessionError, StoreUnavailable
from ..events import Listeners, SessionEvent
from .steps import Emit, ProviderIO, RedisIO, Step

T = TypeVar("T")


def drive_sync(
    step: Step[T], redis: RedisClients, provider: EpochProvider, listeners: Listeners
) -> T:
    try:
        request = next(step)
        while True:
            result: Any = None
            if isinstance(request, Emit):
                listeners.emit(request.events)
            elif isinstance(request, RedisIO):
                client = redis.sync()
                with _store_failures(listeners, Exception):
                    result = run_sync(client, request.commands)
            else:
                with _store_failures(listeners, REDIS_ERRORS):
                    result = getattr(provider, request.method)(*request.args)
            request = step.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def drive_async(
    step: Step[T], redis: RedisClients, provider: EpochProvider, listeners: Listeners
) -> T:
    try:
        request = next(step)
        while True:
            result: Any = None
            if isinstance(request, Emit):
                listeners.emit(request.events)
            elif isinstance(request, RedisIO):
                client = redis.async_()
                with _store_failures(listeners, Exception):
                    result = await run_async(client, request.commands)
            else:
                with _store_failures(listeners, REDIS_ERRORS):
                    result = await getattr(provider, "a" + request.method)(*request.args)
            request = step.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


@contextlib.contextmanager
def _store_failures(
    listeners: Listeners, failures: type[Exception] | tuple[type[Exception], ...]
) -> Iterator[None]:
    """Any of `failures` is the store being unavailable (see `unavailable`); the package's
    own errors pass as they are."""
    try:
        yield
    except SessionError:
        raise
    except failures as error:
        raise unavailable(error, listeners) from error


def unavailable(error: Exception, listeners: Listeners) -> StoreUnavailable:
    """Any failure of the Redis layer, whatever its type (a client library's own bug
    included: redis-py's cluster client has raised AttributeError on a cold start), is
    the store being unavailable: the fail-closed 503, never a 500."""
    listeners.emit((SessionEvent("rejected", reason="unavailable"),))
    return StoreUnavailable(f"the session store failed: {type(error).__name__}")


__all__ = ["ProviderIO", "RedisIO", "drive_async", "drive_sync"]
