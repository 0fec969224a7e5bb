"""Running steps: the only place where the decisions' requests meet real I/O."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

from .._transport.replication import run_replicated_async, run_replicated_sync
from .._transport.round_trip import run_async, run_sync, sync_ran
from ..errors import ConfigurationError, SessionError, StoreUnavailable, store_failed
from ..events import Listeners, SessionEvent
from .steps import Emit, RedisIO, RedisSource, SqlIO, Step

T = TypeVar("T")


def drive_sync(step: Step[T], redis: RedisSource, listeners: Listeners) -> T:
    """Run `step` on the sync face. A failure of a request is thrown into the step, which
    may handle it (a request's own epoch change that could not be made durable); one it
    does not handle propagates from here as it is."""
    try:
        request = next(step)
        while True:
            try:
                result = _serve_sync(request, redis, listeners, step)
            except SessionError as error:
                request = step.throw(error)
                continue
            request = step.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _serve_sync(
    request: RedisIO | SqlIO | Emit, redis: RedisSource, listeners: Listeners, step: Step[Any]
) -> Any:
    if isinstance(request, Emit):
        listeners.emit(request.events)
        return None
    if isinstance(request, SqlIO):
        with _reported(listeners):
            return _run_sql_sync(request)
    source = redis if request.redis is None else request.redis
    client = source.sync()
    try:
        if request.replication is not None:
            return run_replicated_sync(client, request.commands, request.replication)
        return run_sync(client, request.commands, request.errors_as_replies)
    except SessionError:
        raise
    except Exception as error:
        raise unavailable(_operation(step), error, listeners) from error
    finally:
        sync_ran(source, request.commands)


async def drive_async(step: Step[T], redis: RedisSource, listeners: Listeners) -> T:
    """The async twin of drive_sync."""
    try:
        request = next(step)
        while True:
            try:
                if isinstance(request, RedisIO):
                    result = await _redis_async(request, redis)
                else:
                    result = await _serve_async(request, listeners)
            except SessionError as error:
                request = step.throw(error)
                continue
            except Exception as error:
                if not isinstance(request, RedisIO):
                    raise
                request = step.throw(unavailable(_operation(step), error, listeners))
                continue
            request = step.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _redis_async(request: RedisIO, redis: RedisSource) -> Awaitable[Any]:
    """The replies to the request's commands, to await."""
    source = redis if request.redis is None else request.redis
    if request.replication is None:
        return run_async(source.async_(), request.commands, request.errors_as_replies)
    # WAIT holds its connection: never the one the requests share.
    waits = request.replication.wanted > 0
    client = source.async_blocking() if waits else source.async_()
    return run_replicated_async(client, request.commands, request.replication)


async def _serve_async(request: SqlIO | Emit, listeners: Listeners) -> Any:
    if isinstance(request, Emit):
        listeners.emit(request.events)
        return None
    with _reported(listeners):
        return await _run_sql_async(request)


def _run_sql_sync(request: SqlIO) -> Any:
    from .._transport.sql_errors import database_errors

    if request.is_async:
        raise ConfigurationError("this needs a sync database engine, but an async one was given")
    with database_errors(), request.engine.begin() as connection:
        return request.run(connection)


async def _run_sql_async(request: SqlIO) -> Any:
    from .._transport.sql_errors import database_errors

    if not request.is_async:
        raise ConfigurationError("this needs an async database engine, but a sync one was given")
    with database_errors():
        async with request.engine.begin() as connection:
            return await connection.run_sync(request.run)


def unavailable(operation: str, error: Exception, listeners: Listeners) -> StoreUnavailable:
    """Any failure of the Redis layer, whatever its type (a client library's own bug
    included: redis-py's cluster client has raised AttributeError on a cold start), is
    the store being unavailable: the fail-closed 503, never a 500. The runners let the
    package's own errors (SessionError) pass as they are."""
    found = store_failed(operation, error)
    listeners.emit((SessionEvent("rejected", reason="unavailable", error=found),))
    return found


@contextlib.contextmanager
def _reported(listeners: Listeners) -> Iterator[None]:
    """The epoch database failing is the store being unavailable too."""
    try:
        yield
    except StoreUnavailable as error:
        listeners.emit((SessionEvent("rejected", reason="unavailable", error=error),))
        raise


def _operation(step: Step[Any]) -> str:
    """What a step does, for messages: its generator's name (open, commit, invalidate...)."""
    return str(getattr(step, "__name__", "a Redis command"))


__all__ = ["RedisIO", "SqlIO", "drive_async", "drive_sync"]
