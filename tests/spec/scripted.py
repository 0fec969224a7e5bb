"""The scripted runner of the specification: steps run against replies written in the
case, with no Redis and no database."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from session_middleware import SessionEvent
from session_middleware._core.steps import Emit, RedisIO, SqlIO
from session_middleware._protocol.lua_scripts import (
    BUMP_IF,
    COPY_AND_RESTAMP,
    CREATE,
    ENSURE_EPOCH,
    LOGIN,
    READ,
    ROTATE_OUT,
    WRITE,
)
from session_middleware.epochs._sql_cache import FILL

NAMES = {
    READ: "READ",
    WRITE: "WRITE",
    CREATE: "CREATE",
    LOGIN: "LOGIN",
    BUMP_IF: "BUMP_IF",
    COPY_AND_RESTAMP: "COPY_AND_RESTAMP",
    ROTATE_OUT: "ROTATE_OUT",
    ENSURE_EPOCH: "ENSURE_EPOCH",
    FILL: "FILL",
}


@dataclass
class Run:
    result: Any
    # Per round trip, the names of its commands; ("SQL",) for a database transaction.
    steps: list[tuple[str, ...]] = field(default_factory=list)
    commands: list[tuple[Any, ...]] = field(default_factory=list)
    # Per Redis round trip, where it ran: None for the session Redis.
    targets: list[Any] = field(default_factory=list)
    waits: list[int] = field(default_factory=list)  # per Redis round trip, replicas awaited
    events: list[SessionEvent] = field(default_factory=list)


def drive(step: Generator[Any, Any, Any], replies: list[Any]) -> Run:
    """Run a step against scripted replies: one reply per round trip or transaction; an
    exception as a reply is thrown into the step, as the runners throw a failure."""
    run = Run(None)
    try:
        request = next(step)
        while True:
            answer: Any = None
            if isinstance(request, Emit):
                run.events += request.events
            elif isinstance(request, SqlIO):
                run.steps.append(("SQL",))
                answer = replies.pop(0)
            else:
                assert isinstance(request, RedisIO)
                run.steps.append(tuple(name_of(c) for c in request.commands))
                run.commands += request.commands
                run.targets.append(request.redis)
                replication = request.replication
                run.waits.append(0 if replication is None else replication.wanted)
                answer = replies.pop(0)
            # An exception stands for a failed round trip: thrown in, as the runners do.
            failed = isinstance(answer, Exception)
            request = step.throw(answer) if failed else step.send(answer)
    except StopIteration as done:
        run.result = done.value
    assert replies == [], "every scripted reply was asked for"
    return run


def name_of(command: tuple[Any, ...]) -> str:
    return NAMES.get(command[1], command[0]) if command[0] == "EVAL" else str(command[0])
