"""The sans-IO protocol between the decisions (core, users, epoch providers) and the runners.

A decision is a generator: it yields what it needs done and is sent back the result.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .._protocol.durability import Replication
from .._protocol.wire import Command
from ..events import SessionEvent

T = TypeVar("T")


class RedisSource(Protocol):
    """Where a runner gets a Redis client for its face (RedisClients, CachingClients)."""

    def sync(self) -> Any: ...

    def async_(self) -> Any: ...

    def async_blocking(self) -> Any:
        """For commands that hold their connection until answered (WAIT)."""


@dataclass(slots=True)  # not frozen: made for every round trip, and frozen costs more
class RedisIO:
    """Run these commands in one round trip; send back the replies.

    redis: the Redis to run them on; None for the session Redis.
    replication: when given, the writes are made durable as it says (see
        _transport/replication.py): retried through a failover, and acknowledged by replicas.
    errors_as_replies: a command's error reply (a key of the wrong type) is sent back in
        its place, as the exception, instead of failing the round trip.
    """

    commands: tuple[Command, ...]
    redis: RedisSource | None = None
    replication: Replication | None = None
    errors_as_replies: bool = False


@dataclass(frozen=True, slots=True)
class SqlIO:
    """Call `run` with a connection of `engine`, in a transaction of its own; send back
    what it returned. `run` takes a sync SQLAlchemy Connection: on an AsyncEngine it runs
    through ``AsyncConnection.run_sync``."""

    engine: Any  # a SQLAlchemy Engine or AsyncEngine
    is_async: bool
    run: Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Emit:
    """Hand these lifecycle events to the configuration's listeners; send back None."""

    events: tuple[SessionEvent, ...]


Step = Generator[RedisIO | SqlIO | Emit, Any, T]
