"""Counting Redis round trips and commands: a redis.asyncio client that counts, the way
tests/support/counting.py does (with the writes among them), and, for clients built where
no client can be passed in (local_cache's tracking pool), every redis.asyncio connection of
the process for a while."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import redis.asyncio

from session_middleware._protocol import lua_scripts as scripts
from session_middleware._transport.round_trip import script_sha
from tests.support.counting import Counter as RoundTrips

from .settings import REDIS_URL

WRITES = frozenset(
    {
        "SET",
        "DEL",
        "UNLINK",
        "EVAL",
        "EVALSHA",
        "EXPIRE",
        "PEXPIRE",
        "PEXPIREAT",
        "SETEX",
        "SADD",
        "SREM",
        "ZADD",
        "ZREM",
        "ZREMRANGEBYSCORE",
        "HSET",
        "HDEL",
        "GETEX",
        "INCR",
    }
)


# session_middleware's scripts, by their text: an EVAL is counted as EVAL:<NAME>, and only
# the scripts that can change a key count as writes (READ changes none).
SCRIPTS = {
    getattr(scripts, name): name
    for name in ("READ", "WRITE", "CREATE", "LOGIN", "ENSURE_EPOCH", "BUMP_IF", "REVOKE")
    if isinstance(getattr(scripts, name, None), str)
}
SCRIPTS.update({script_sha(text): name for text, name in list(SCRIPTS.items())})  # EVALSHA
READ_ONLY_SCRIPTS = frozenset({"EVAL:READ"})


def command_name(args: tuple[Any, ...]) -> str:
    """The command's name, scripts named: EVAL:READ for session_middleware's READ script."""
    name = str(args[0]).upper()
    if name in ("EVAL", "EVALSHA") and len(args) > 1:
        script = args[1].decode() if isinstance(args[1], bytes) else args[1]
        return f"EVAL:{SCRIPTS.get(script, '?')}"
    return name


def is_write(name: str) -> bool:
    if name.startswith("EVAL:"):
        return name not in READ_ONLY_SCRIPTS
    return name in WRITES


class Counter(RoundTrips):
    @property
    def writes(self) -> int:
        return sum(1 for name in self.commands if is_write(name))


def _connection_class(counter: Counter) -> type:
    class CountingConnection(redis.asyncio.Connection):
        def pack_command(self, *args: Any) -> Any:
            counter.commands.append(command_name(args))
            return super().pack_command(*args)

        async def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
            counter.round_trips += 1
            await super().send_packed_command(*args, **kwargs)

    return CountingConnection


async def counted_client(counter: Counter) -> redis.asyncio.Redis:
    pool = redis.asyncio.ConnectionPool.from_url(
        REDIS_URL, connection_class=_connection_class(counter)
    )
    client = redis.asyncio.Redis(connection_pool=pool)
    await client.ping()
    counter.reset()
    return client


@contextlib.contextmanager
def counting_connections(counter: Counter) -> Iterator[Counter]:
    """Count what every redis.asyncio.Connection of this process sends, while inside.

    For the ours-cache variant, whose tracking connections local_cache builds itself from
    the URL. Whatever else the process sends meanwhile is counted too, so count with nothing
    else running; connections opened inside also count their handshake (HELLO, CLIENT
    TRACKING...), which is what a request that opens one costs.
    """
    connection = redis.asyncio.Connection
    pack, send = connection.pack_command, connection.send_packed_command
    own = {name: connection.__dict__[name] for name in _PATCHED if name in connection.__dict__}

    def pack_command(self: Any, *args: Any) -> Any:
        counter.commands.append(command_name(args))
        return pack(self, *args)

    async def send_packed_command(self: Any, *args: Any, **kwargs: Any) -> None:
        counter.round_trips += 1
        await send(self, *args, **kwargs)

    connection.pack_command = pack_command  # type: ignore[method-assign]
    connection.send_packed_command = send_packed_command  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        for name in _PATCHED:
            if name in own:
                setattr(connection, name, own[name])
            else:
                delattr(connection, name)


_PATCHED = ("pack_command", "send_packed_command")
