"""Running steps: the only place where the decisions' requests meet real I/O."""

from __future__ import annotations

from typing import Any, TypeVar

from .._redis.replication import run_replicated_async, run_replicated_sync
from .._redis.round_trip import run_async, run_sync
from ..errors import ConfigurationError, SessionError, StoreUnavailable, store_failed
from ..events import Listeners, SessionEvent
from .steps import Emit, RedisIO, RedisSource, SqlIO, Step

T = TypeVar("T")


def drive_sync(step: Step[T], redis: RedisSource, listeners: Listeners) -> T:
    try:
        request = next(step)
        while True:
            result: Any = None
            if isinstance(request, RedisIO):
                client = (redis if request.redis is None else request.redis).sync()
                try:
                    if request.replication is not None:
                        result = run_replicated_sync(client, request.commands, request.replication)
                    else:
                        result = run_sync(client, request.commands)
                except SessionError:
                    raise
                except Exception as error:
                    raise unavailable(step, error, listeners) from error
            elif isinstance(request, Emit):
                listeners.emit(request.events)
            else:
                try:
                    result = _run_sql_sync(request)
                except StoreUnavailable as error:
                    report(error, listeners)
                    raise
            request = step.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def drive_async(step: Step[T], redis: RedisSource, listeners: Listeners) -> T:
    try:
        request = next(step)
        while True:
            result: Any = None
            if isinstance(request, RedisIO):
                source = redis if request.redis is None else request.redis
                # WAIT holds its connection: never the one the requests share.
                waits = request.replication is not None and request.replication.wanted > 0
                client = source.async_blocking() if waits else source.async_()
                try:
                    if request.replication is not None:
                        result = await run_replicated_async(
                            client, request.commands, request.replication
                        )
                    else:
                        result = await run_async(client, request.commands)
                except SessionError:
                    raise
                except Exception as error:
                    raise unavailable(step, error, listeners) from error
            elif isinstance(request, Emit):
                listeners.emit(request.events)
            else:
                try:
                    result = await _run_sql_async(request)
                except StoreUnavailable as error:
                    report(error, listeners)
                    raise
            request = step.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _run_sql_sync(request: SqlIO) -> Any:
    from ..epochs._sql_errors import database_errors  # SqlIO comes only with SQLAlchemy

    if request.is_async:
        raise ConfigurationError("this needs a sync database engine, but an async one was given")
    with database_errors(), request.engine.begin() as connection:
        return request.run(connection)


async def _run_sql_async(request: SqlIO) -> Any:
    from ..epochs._sql_errors import database_errors

    if not request.is_async:
        raise ConfigurationError("this needs an async database engine, but a sync one was given")
    with database_errors():
        async with request.engine.begin() as connection:
            return await connection.run_sync(request.run)


def unavailable(step: Step[Any], error: Exception, listeners: Listeners) -> StoreUnavailable:
    """Any failure of the Redis layer, whatever its type (a client library's own bug
    included: redis-py's cluster client has raised AttributeError on a cold start), is
    the store being unavailable: the fail-closed 503, never a 500. The runners let the
    package's own errors (SessionError) pass as they are."""
    found = store_failed(getattr(step, "__name__", "a Redis command"), error)
    listeners.emit((SessionEvent("rejected", reason="unavailable", error=found),))
    return found


def report(error: StoreUnavailable, listeners: Listeners) -> None:
    """The epoch database failing is the store being unavailable too."""
    listeners.emit((SessionEvent("rejected", reason="unavailable", error=error),))


__all__ = ["RedisIO", "SqlIO", "drive_async", "drive_sync"]
