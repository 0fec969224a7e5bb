"""The sans-IO protocol between the decisions (core, users) and the drivers.

A decision is a generator: it yields what it needs done and is sent back the result.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from .._redis.round_trip import Command
from ..events import SessionEvent

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RedisIO:
    """Run these commands on the session Redis in one round trip; send back the replies."""

    commands: tuple[Command, ...]


@dataclass(frozen=True, slots=True)
class ProviderIO:
    """Call `method` (or its `a`-prefixed twin) on the epoch provider; send back its result."""

    method: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Emit:
    """Hand these lifecycle events to the configuration's listeners; send back None."""

    events: tuple[SessionEvent, ...]


Step = Generator[RedisIO | ProviderIO | Emit, Any, T]
