"""Running SQLEpochs' operations, sync or async, from one logic.

An operation is a generator that yields what it needs done: `Sql` (a function run on a
sync Connection inside a transaction of its own; the async face runs it through
`AsyncConnection.run_sync`) or `Redis` (commands for one round trip). The same
operation therefore serves both faces, as the core's steps do.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.engine import Connection, Engine

from .._redis.round_trip import Command, run_async, run_sync
from ._sql_errors import database_errors

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Sql:
    """Run `run` on a connection in a transaction of its own; send back its result."""

    run: Callable[[Connection], Any]


@dataclass(frozen=True, slots=True)
class Redis:
    """Run these commands on the session Redis in one round trip; send back the replies."""

    commands: tuple[Command, ...]


Op = Generator[Sql | Redis, Any, T]


def run_op(op: Op[T], engine: Engine, redis: Callable[[], Any]) -> T:
    try:
        step = next(op)
        while True:
            if isinstance(step, Sql):
                with database_errors(), engine.begin() as connection:
                    result = step.run(connection)
            else:
                result = run_sync(redis(), step.commands)
            step = op.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def arun_op(op: Op[T], engine: AsyncEngine, redis: Callable[[], Any]) -> T:
    try:
        step = next(op)
        while True:
            if isinstance(step, Sql):
                with database_errors():
                    async with engine.begin() as connection:
                        result = await connection.run_sync(step.run)
            else:
                result = await run_async(redis(), step.commands)
            step = op.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
