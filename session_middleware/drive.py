"""Running the core's steps: the only place where its requests meet real I/O."""

from __future__ import annotations

from typing import Any, TypeVar

from .clients import REDIS_ERRORS, RedisClients
from .commands import run_async, run_sync
from .epochs.base import EpochProvider
from .errors import SessionError, StoreUnavailable
from .steps import ProviderIO, RedisIO, Step

T = TypeVar("T")


def drive_sync(step: Step[T], redis: RedisClients, provider: EpochProvider) -> T:
    try:
        request = next(step)
        while True:
            if isinstance(request, RedisIO):
                client = redis.sync()
                try:
                    result: Any = run_sync(client, request.commands)
                except SessionError:
                    raise
                except Exception as error:
                    raise unavailable(error) from error
            else:
                try:
                    result = getattr(provider, request.method)(*request.args)
                except REDIS_ERRORS as error:
                    raise unavailable(error) from error
            request = step.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def drive_async(step: Step[T], redis: RedisClients, provider: EpochProvider) -> T:
    try:
        request = next(step)
        while True:
            if isinstance(request, RedisIO):
                client = redis.async_()
                try:
                    result: Any = await run_async(client, request.commands)
                except SessionError:
                    raise
                except Exception as error:
                    raise unavailable(error) from error
            else:
                try:
                    result = await getattr(provider, "a" + request.method)(*request.args)
                except REDIS_ERRORS as error:
                    raise unavailable(error) from error
            request = step.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def unavailable(error: Exception) -> StoreUnavailable:
    """Any failure of the Redis layer, whatever its type (a client library's own bug
    included: redis-py's cluster client has raised AttributeError on a cold start), is
    the store being unavailable: the fail-closed 503, never a 500."""
    return StoreUnavailable(f"the session store failed: {type(error).__name__}")


__all__ = ["ProviderIO", "RedisIO", "drive_async", "drive_sync"]
