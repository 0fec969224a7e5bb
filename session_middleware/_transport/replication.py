"""Writes that return only once a replica has them, so that a failover cannot undo them.

`replicated` decides, with no I/O, what to send and when to give up; `run_replicated_sync`
and `run_replicated_async` carry its requests to a standalone, Sentinel or Cluster client.
One attempt sends each master holding the keys its writes and asks about its replicas
(INFO replication, and the history key), then, when there are replicas to wait for,
sends the writes again followed by WAIT on one connection, for `wanted` replicas: fewer
when the master has fewer connected, unless its replication history (its replication
ID) is known to have had a replica, since a replica that was cut off must still be
waited for. A history is known to have had one when this process saw it with a replica
connected, when the history key on the master names it (written, with the waited-for
writes, by any process that saw a replica), or when the master keeps a replication
backlog and was never promoted (a backlog is made when a replica first connects). So a
fresh process, a cron job or the CLI waits as a long-running worker does. A master
Sentinel or the cluster promoted starts a new history, so a failover onto a replica that
has no replica of its own does not block writes. An attempt that fails (the master is
gone, was demoted, or too few replicas acknowledged) is made again, on the master the
client finds then, until one succeeds or `deadline` seconds have passed; the last
failure is raised, except that a timeout raised by any attempt wins over a later
connection failure: the timed-out writes may have been applied, and the caller must
hear that it is uncertain. A timeout is raised at once when no failover can follow
(`follows_failover` False: a single Redis) and the master is not known to have had a
replica: a hung server costs one timeout, not the deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio.cluster
from redis._parsers.helpers import parse_info
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._protocol.durability import Replication
from .._protocol.wire import Command, text
from ..errors import NotReplicated
from .clients import REDIS_ERRORS, is_cluster_client, ready_cluster
from .round_trip import run_async, run_sync

_PAUSES = ExponentialWithJitterBackoff(cap=0.5, base=0.05)
# What fails an attempt (and is raised once the deadline has passed).
_FAILURES: tuple[type[Exception], ...] = (NotReplicated, *REDIS_ERRORS)
# The replication IDs of the masters seen with a replica connected, in this process.
REPLICATED_HISTORIES: set[str] = set()
# How long the history key lives after the last write that saw a replica.
HISTORY_TTL_MS = 30 * 24 * 3600 * 1000


class _Known:
    """What a run learned: whether a master it reached had replicas in its history."""

    replicas = False


@dataclass(frozen=True)
class Masters:
    """Request: the commands' indices grouped by the master that serves them."""


# OnMaster.group when the commands need not share a connection (nothing is waited for).
ANY_CONNECTION = -1


@dataclass(frozen=True)
class OnMaster:
    """Request: run `commands` on one connection to the master of group `group`."""

    group: int
    commands: list[Command]


@dataclass(frozen=True)
class Pause:
    """Request: wait `seconds`, then have the client read the topology again."""

    seconds: float


Request = Masters | OnMaster | Pause
# A request's reply, or the exception running it raised.
Reply = Any


def replicated(
    commands: Sequence[Command], policy: Replication, histories: set[str] = REPLICATED_HISTORIES
) -> Generator[Request, Reply, list[Any]]:
    """The replies to `commands`, once replicated as `policy` says (see the module);
    `histories` holds the replication IDs seen with a replica, and is added to."""
    if not policy.wanted:
        replies = yield OnMaster(ANY_CONNECTION, list(commands))
        _raise_if_error(replies)
        return list(replies)
    deadline, failures = time.monotonic() + policy.deadline, 0
    timed_out: RedisTimeoutError | None = None
    known = _Known()
    while True:
        try:
            return (yield from _attempt(commands, policy, histories, known))
        except _FAILURES as error:
            failures += 1
            if isinstance(error, RedisTimeoutError):
                if not policy.follows_failover and not known.replicas:
                    raise  # a single Redis that hangs: no failover will come
                timed_out = error
            pause = _PAUSES.compute(failures)
            if time.monotonic() + pause >= deadline:
                if timed_out is not None and isinstance(error, RedisConnectionError):
                    raise timed_out from error
                raise error
            yield Pause(pause)


def _attempt(
    commands: Sequence[Command], policy: Replication, histories: set[str], known: _Known
) -> Generator[Request, Reply, list[Any]]:
    groups = yield Masters()
    _raise_if_error(groups)
    replies: dict[int, Any] = {}
    key = policy.history_key
    asked: list[Command] = [("INFO", "replication")]
    if key is not None:
        asked.append(("GET", key))
    for group, indices in enumerate(groups):
        sent = [commands[index] for index in indices]
        results = yield OnMaster(group, [*sent, *asked])
        wait, history = _replicas_to_wait(results, len(sent), policy.wanted, histories)
        if wait:
            known.replicas = True
            # WAIT counts the writes made on its own connection, so the writes go again
            # before it, in one round trip (the same values: repeating them is harmless),
            # with the history key, which WAIT then covers too.
            mark: list[Command] = []
            if key is not None and history is not None:
                mark.append(("SET", key, history, "PX", HISTORY_TTL_MS))
            results = yield OnMaster(group, [*sent, *mark, ("WAIT", wait, policy.timeout_ms)])
            _raise_if_error(results)
            acknowledged = int(results[-1])
            if acknowledged < wait:
                raise NotReplicated(acknowledged, wait)
        replies.update(zip(indices, results[: len(sent)], strict=True))
    return [replies[index] for index in range(len(commands))]


def _replicas_to_wait(
    replies: Any, sent: int, wanted: int, histories: set[str]
) -> tuple[int, str | None]:
    """How many replicas to WAIT for, and the master's replication history, given the
    replies to the `sent` writes, INFO replication and the history key (see the module).
    A server that is not a master (a demoted one, before Sentinel told every client)
    fails the attempt; one that refuses INFO (an ACL) is waited on for `wanted`."""
    if isinstance(replies, ResponseError):
        return wanted, None
    _raise_if_error(replies)
    info = replies[sent]
    if not isinstance(info, dict):
        info = parse_info(text(info))  # type: ignore[no-untyped-call]
    if info.get("role") != "master":
        raise RedisConnectionError("the server is no longer the master")
    connected, history = int(info.get("connected_slaves", 0)), str(info.get("master_replid"))
    if connected:
        histories.add(history)
    marked = len(replies) > sent + 1 and text(replies[sent + 1]) == history
    never_promoted = str(info.get("master_replid2", 0)).strip("0") == ""
    backlog = bool(info.get("repl_backlog_active")) and never_promoted
    if history in histories or marked or backlog:
        return wanted, history
    return min(wanted, connected), history


def _raise_if_error(reply: Any) -> None:
    if isinstance(reply, Exception):
        raise reply


# -- the drivers ---------------------------------------------------------------------


class _Run:
    """One run of `replicated`: its next request, given the reply to the last one, and
    what the drivers keep between requests (the masters found)."""

    def __init__(self, commands: Sequence[Command], policy: Replication) -> None:
        self.commands = commands
        self.masters: list[Any] = []
        self.reply: Reply = None
        self.result: list[Any] = []
        self._steps = replicated(commands, policy)

    def next_request(self) -> Request | None:
        """The next request, or None once done (`result` holds the replies)."""
        try:
            return self._steps.send(self.reply)
        except StopIteration as done:
            self.result = done.value
            return None


def run_replicated_sync(client: Any, commands: Sequence[Command], policy: Replication) -> list[Any]:
    """Run write commands, each keyed by its first argument (a script: its first key) and
    safe to repeat, as `replicated` says, on a sync client; raise NotReplicated, or the
    client's error, when no attempt succeeded before the deadline."""
    run = _Run(commands, policy)
    while (request := run.next_request()) is not None:
        try:
            run.reply = _serve_sync(client, run, request)
        except _FAILURES as error:
            run.reply = error
    return run.result


def _serve_sync(client: Any, run: _Run, request: Request) -> Reply:
    cluster = is_cluster_client(client)
    if isinstance(request, Masters):
        run.masters, groups = _by_master(client, run.commands)
        return groups
    if isinstance(request, OnMaster):
        on_node = cluster and request.group != ANY_CONNECTION
        target = client.get_redis_connection(run.masters[request.group]) if on_node else client
        return run_sync(target, request.commands)
    time.sleep(request.seconds)
    if cluster:
        client.nodes_manager.initialize()
    return None


async def run_replicated_async(
    client: Any, commands: Sequence[Command], policy: Replication
) -> list[Any]:
    """The async driver of `replicated` (see run_replicated_sync)."""
    run = _Run(commands, policy)
    while (request := run.next_request()) is not None:
        try:
            run.reply = await _serve_async(client, run, request)
        except _FAILURES as error:
            run.reply = error
    return run.result


async def _serve_async(client: Any, run: _Run, request: Request) -> Reply:
    cluster = is_cluster_client(client)
    if isinstance(request, Masters):
        await ready_cluster(client)
        run.masters, groups = _by_master(client, run.commands)
        return groups
    if isinstance(request, OnMaster):
        if cluster and request.group != ANY_CONNECTION:
            return await _on_node_async(run.masters[request.group], request.commands)
        return await run_async(client, request.commands)
    await asyncio.sleep(request.seconds)
    if cluster:
        await client.nodes_manager.initialize()
    return None


def _by_master(client: Any, commands: Sequence[Command]) -> tuple[list[Any], list[list[int]]]:
    """The masters serving `commands` (a cluster's nodes; [client] otherwise) and, for
    each, the indices of the commands it serves."""
    if not is_cluster_client(client):
        return [client], [list(range(len(commands)))]
    groups: dict[str, tuple[Any, list[int]]] = {}
    for index, command in enumerate(commands):
        # A script's first key (EVAL script numkeys key...); any other command's first argument.
        key = command[3] if command[0] == "EVAL" else command[1]
        node = client.get_node_from_key(key)
        groups.setdefault(node.name, (node, []))[1].append(index)
    return [node for node, _ in groups.values()], [indices for _, indices in groups.values()]


async def _on_node_async(node: Any, commands: list[Command]) -> list[Any]:
    """`commands` on one connection to a cluster node (WAIT counts that connection's writes)."""
    staged = [
        redis.asyncio.cluster.PipelineCommand(position, *command)
        for position, command in enumerate(commands)
    ]
    await node.execute_pipeline(staged)
    replies = [command.result for command in staged]
    for reply in replies:
        _raise_if_error(reply)
    return replies
