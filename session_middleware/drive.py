"""Running the core's steps: the only place where its requests meet real I/O."""

from __future__ import annotations

from typing import Any, TypeVar

from .clients import RedisClients
from .commands import run_async, run_sync
from .epochs.base import EpochProvider
from .steps import ProviderIO, RedisIO, Step

T = TypeVar("T")


def drive_sync(step: Step[T], redis: RedisClients, provider: EpochProvider) -> T:
    try:
        request = next(step)
        while True:
            if isinstance(request, RedisIO):
                result: Any = run_sync(redis.sync(), request.commands)
            else:
                result = getattr(provider, request.method)(*request.args)
            request = step.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def drive_async(step: Step[T], redis: RedisClients, provider: EpochProvider) -> T:
    try:
        request = next(step)
        while True:
            if isinstance(request, RedisIO):
                result: Any = await run_async(redis.async_(), request.commands)
            else:
                result = await getattr(provider, "a" + request.method)(*request.args)
            request = step.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


__all__ = ["ProviderIO", "RedisIO", "drive_async", "drive_sync"]
