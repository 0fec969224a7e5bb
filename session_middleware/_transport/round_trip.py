"""Running the core's Redis commands: one command alone, several as one pipeline.

A command is a plain tuple of Redis arguments, so the core that produces them does no
I/O and the same commands run through the sync and the async client.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from redis.exceptions import NoScriptError

from .._protocol.wire import Command
from .cluster_reads import cluster_reads, read_async, read_sync


class AsyncRedisClient(Protocol):
    """What the async runners use of a client: a redis.asyncio client (plain, Sentinel or
    Cluster), the multiplexed connection, or the local cache. A client that also has
    ``run(commands)``, an awaitable of the replies (a list), runs a command list itself; a
    redis.asyncio client's pipeline runs it otherwise."""

    async def execute_command(self, *args: Any, **options: Any) -> Any: ...

    async def aclose(self) -> None: ...


def run_sync(
    client: Any, commands: Sequence[Command], errors_as_replies: bool = False
) -> list[Any]:
    """Run the commands in one round trip and return their replies in order; the first
    error among them is raised, or with `errors_as_replies` returned in its place."""
    if len(commands) == 1 and not errors_as_replies:
        try:
            return [client.execute_command(*by_sha(commands[0]))]
        except NoScriptError:
            return [client.execute_command(*commands[0])]
    if cluster_reads(client, commands):
        replies = read_sync(client, commands)
        return replies if errors_as_replies else raised(replies)
    with client.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*by_sha(command))
        replies = list(pipe.execute(raise_on_error=False))
    for index, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            replies[index] = client.execute_command(*commands[index])
    return replies if errors_as_replies else raised(replies)


def sync_ran(source: Any, commands: Sequence[Command]) -> None:
    """`commands` ran on the sync client of `source` (a RedisSource): one whose async face
    reads through a local cache (CachingClients) drops what they may have changed."""
    sync_wrote = getattr(source, "sync_wrote", None)
    if sync_wrote is not None:
        sync_wrote(commands)


def run_async(
    client: AsyncRedisClient, commands: Sequence[Command], errors_as_replies: bool = False
) -> Awaitable[list[Any]]:
    """The async twin of run_sync: the replies, to await."""
    run = getattr(client, "run", None)
    if run is not None:  # the multiplexed connection, the local cache
        replies: Awaitable[list[Any]] = run(commands, errors_as_replies)
        return replies
    return _run_redis_py(client, commands, errors_as_replies)


async def _run_redis_py(
    client: Any, commands: Sequence[Command], errors_as_replies: bool
) -> list[Any]:
    if len(commands) == 1 and not errors_as_replies:
        try:
            return [await client.execute_command(*by_sha(commands[0]))]
        except NoScriptError:
            return [await client.execute_command(*commands[0])]
    if cluster_reads(client, commands):
        replies = await read_async(client, commands)
        return replies if errors_as_replies else raised(replies)
    async with client.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*by_sha(command))
        replies = list(await pipe.execute(raise_on_error=False))
    for index, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            replies[index] = await client.execute_command(*commands[index])
    return replies if errors_as_replies else raised(replies)


def by_sha(command: Command) -> Command:
    """A script by its SHA-1 (EVALSHA): Redis runs it without hashing its text again and
    the client sends 40 bytes instead of the script. A server that does not know it yet (a
    restart, a failover, a new cluster node) answers NOSCRIPT, and the command is sent
    again with EVAL, which loads it."""
    if command[0] != "EVAL":
        return command
    script = command[1]
    return ("EVALSHA", _SHAS.get(script) or script_sha(script), *command[2:])


# The scripts' SHA-1s: a plain dict, looked up on every script call, costs a fraction of
# lru_cache's call (the scripts are the package's own few constants).
_SHAS: dict[str, str] = {}


def script_sha(script: str) -> str:
    sha = _SHAS.get(script)
    if sha is None:
        sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
        if len(_SHAS) >= 64:
            _SHAS.clear()
        _SHAS[script] = sha
    return sha


def raised(replies: list[Any]) -> list[Any]:
    """The replies, raising the first error among them as the pipeline would have."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies
