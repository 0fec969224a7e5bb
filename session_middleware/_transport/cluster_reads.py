"""Read-only commands on a Redis Cluster: one pipeline, sent once, then each command that
it could not answer sent again alone, as a single command is.

A command sent alone through a cluster client's execute_command survives another master's
failover: on a connection error redis-py drops only that node's idle connections, reads the
cluster's layout again from another node, and sends the command once more
(cluster_clients.SENT_AGAIN_AFTER). redis-py 8.1's cluster pipeline does not: on the same
error its async pipeline closes every connection of the client, failing the requests in
flight to the healthy masters, and its sync pipeline reads the layout again at once, from
the node that just failed if it was the first one given. So a pipeline of reads makes one
attempt, with redis-py's own retries turned off, and whatever that attempt could not read
is read again alone, and so is every command after it: the commands are still read in
their order (the session read's check needs its record read before its epoch, see
record_commands.pipelined_read). Reads may be sent twice: they change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio.cluster
import redis.cluster
import redis.retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, ResponseError

from .._protocol.wire import Command
from .cluster_clients import SENT_AGAIN_AFTER

# The commands of the session layer's pipelines that only read.
READS = frozenset({"GET", "HGET", "HGETALL", "HMGET", "EXISTS", "ZSCORE", "ZRANGE"})

# What makes a pipeline's attempt, or one of its replies, be read again alone.
READ_AGAIN_AFTER: tuple[type[Exception], ...] = (*SENT_AGAIN_AFTER, RedisClusterException)

_ONCE = redis.retry.Retry(NoBackoff(), 0)
_UNREAD = object()


def cluster_reads(client: Any, commands: Sequence[Command]) -> bool:
    """Whether `commands` are reads to run on a Redis Cluster client."""
    return isinstance(
        client, (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster)
    ) and all(command[0].upper() in READS for command in commands)


def read_sync(client: Any, commands: Sequence[Command]) -> list[Any]:
    """The replies to `commands`, in order, an error reply (a key of the wrong type) in its
    command's place; a command that cannot be read alone either raises its error."""
    pipe = client.pipeline(transaction=False)
    pipe.retry = _ONCE  # read by ClusterPipeline.execute
    for command in commands:
        pipe.execute_command(*command)
    try:
        replies = list(pipe.execute(raise_on_error=False))
    except READ_AGAIN_AFTER:
        replies = [_UNREAD] * len(commands)
    kept = _answered(replies)
    return replies[:kept] + [_alone_sync(client, command) for command in commands[kept:]]


async def read_async(client: Any, commands: Sequence[Command]) -> list[Any]:
    """The async twin of read_sync."""
    pipe = client.pipeline(transaction=False)
    pipe._execution_strategy = _SentOnce(pipe)
    for command in commands:
        pipe.execute_command(*command)
    try:
        replies = list(await pipe.execute(raise_on_error=False))
    except READ_AGAIN_AFTER:
        replies = [_UNREAD] * len(commands)
    kept = _answered(replies)
    return replies[:kept] + [await _alone_async(client, command) for command in commands[kept:]]


class _SentOnce(redis.asyncio.cluster.PipelineStrategy):
    """redis.asyncio's pipeline strategy without its retries (which the client's retry
    object sets for every pipeline and command alike)."""

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        try:
            return await self._execute(
                self._pipe.cluster_client,
                self._command_queue,
                raise_on_error=raise_on_error,
                allow_redirections=allow_redirections,
            )
        finally:
            await self.reset()  # type: ignore[no-untyped-call]


def _answered(replies: Sequence[Any]) -> int:
    """How many replies, from the first, the pipeline's attempt read."""
    for index, reply in enumerate(replies):
        if reply is _UNREAD or isinstance(reply, READ_AGAIN_AFTER):
            return index
    return len(replies)


def _alone_sync(client: Any, command: Command) -> Any:
    try:
        return client.execute_command(*command)
    except READ_AGAIN_AFTER:  # CLUSTERDOWN is a ResponseError too
        raise
    except ResponseError as error:
        return error


async def _alone_async(client: Any, command: Command) -> Any:
    try:
        return await client.execute_command(*command)
    except READ_AGAIN_AFTER:  # CLUSTERDOWN is a ResponseError too
        raise
    except ResponseError as error:
        return error
