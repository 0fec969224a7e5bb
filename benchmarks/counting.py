"""A redis.asyncio client that counts round trips and commands, the way tests/support.py does."""

from __future__ import annotations

from typing import Any

import redis.asyncio

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


class Counter:
    def __init__(self) -> None:
        self.round_trips = 0
        self.commands: list[str] = []

    def reset(self) -> None:
        self.round_trips = 0
        self.commands = []

    @property
    def writes(self) -> int:
        return sum(1 for name in self.commands if name in WRITES)


def _connection_class(counter: Counter) -> type:
    class CountingConnection(redis.asyncio.Connection):
        def pack_command(self, *args: Any) -> Any:
            counter.commands.append(str(args[0]).upper())
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
