"""Running the core's Redis commands: one command alone, several as one pipeline.

A command is a plain tuple of Redis arguments, so the core that produces them does no
I/O and the same commands run through the sync and the async client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Command = tuple[Any, ...]


def run_sync(client: Any, commands: Sequence[Command]) -> list[Any]:
    """Run the commands in one round trip and return their replies in order."""
    if len(commands) == 1:
        return [client.execute_command(*commands[0])]
    with client.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute())


async def run_async(client: Any, commands: Sequence[Command]) -> list[Any]:
    """The async twin of run_sync."""
    run = getattr(client, "run", None)
    if run is not None:  # a client that runs command lists itself (local_cache.CachedRedis)
        return list(await run(commands))
    if len(commands) == 1:
        return [await client.execute_command(*commands[0])]
    async with client.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())


def text(reply: Any) -> str | None:
    """A reply as str, whether the client decodes responses or not."""
    if reply is None or isinstance(reply, str):
        return reply
    if isinstance(reply, (bytes, bytearray, memoryview)):
        return bytes(reply).decode("utf-8", "replace")
    return str(reply)
