"""What crosses the wire to Redis, with no I/O: a command is a plain tuple of Redis
arguments (so the core that builds it runs on the sync and the async client alike), and a
reply is read as text whatever the client's decoding."""

from __future__ import annotations

from typing import Any

Command = tuple[Any, ...]


def text(reply: Any) -> str | None:
    """A reply as str, whether the client decodes responses or not."""
    if type(reply) is bytes:  # what the package's clients give
        return reply.decode("utf-8", "replace")
    if reply is None or isinstance(reply, str):
        return reply
    if isinstance(reply, (bytes, bytearray, memoryview)):
        return bytes(reply).decode("utf-8", "replace")
    return str(reply)
