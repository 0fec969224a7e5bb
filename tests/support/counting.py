"""Redis clients whose connections count the round trips and the commands they send."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio

from session_middleware._protocol import lua_scripts as scripts
from session_middleware._transport.round_trip import script_sha
from session_middleware.epochs import _sql_cache as sql_cache

from . import REDIS_URL


class Counter:
    """Round trips (packets sent) and commands sent through counted connections."""

    def __init__(self) -> None:
        self.round_trips = 0
        self.commands: list[str] = []

    def reset(self) -> None:
        self.round_trips = 0
        self.commands = []


SCRIPT_NAMES = {
    body: name
    for module in (scripts, sql_cache)
    for name, body in vars(module).items()
    if name.isupper() and isinstance(body, str)
}


SCRIPT_NAMES.update({script_sha(body): name for body, name in list(SCRIPT_NAMES.items())})


def command_name(args: Any) -> str:
    """A command's name; a script run with EVAL or EVALSHA is named after its constant in
    _protocol/lua_scripts.py."""
    name = str(args[0]).upper()
    if name in ("EVAL", "EVALSHA") and len(args) > 1:
        body = args[1].decode() if isinstance(args[1], bytes) else str(args[1])
        return SCRIPT_NAMES.get(body, name)
    return name


def _counting(base: type, counter: Counter) -> type:
    class CountingConnection(base):  # type: ignore[misc, valid-type]
        def send_packed_command(self, *args: Any, **kwargs: Any) -> Any:
            counter.round_trips += 1
            return super().send_packed_command(*args, **kwargs)

    return CountingConnection


def _counting_sync(counter: Counter) -> type:
    class CountingSyncConnection(_counting(redis.Connection, counter)):  # type: ignore[misc]
        def send_command(self, *args: Any, **kwargs: Any) -> None:
            counter.commands.append(command_name(args))
            super().send_command(*args, **kwargs)

        def pack_commands(self, commands: Any) -> Any:
            counter.commands.extend(command_name(command) for command in commands)
            return super().pack_commands(commands)

    return CountingSyncConnection


def _counting_async(counter: Counter) -> type:
    class CountingAsyncConnection(_counting(redis.asyncio.Connection, counter)):  # type: ignore[misc]
        def pack_command(self, *args: Any) -> Any:
            counter.commands.append(command_name(args))
            return super().pack_command(*args)

    return CountingAsyncConnection


def counted_sync_client(counter: Counter) -> redis.Redis:
    connection_class = _counting_sync(counter)
    pool = redis.ConnectionPool.from_url(REDIS_URL, connection_class=connection_class)
    client = redis.Redis.from_pool(pool)  # close() closes the pool too
    client.ping()
    for body in SCRIPT_NAMES:  # loaded: a count never includes a first NOSCRIPT and its EVAL
        if len(body) > 40:
            client.script_load(body)
    counter.reset()
    return client


async def counted_async_client(counter: Counter) -> redis.asyncio.Redis:
    connection_class = _counting_async(counter)
    pool = redis.asyncio.ConnectionPool.from_url(REDIS_URL, connection_class=connection_class)
    client = redis.asyncio.Redis.from_pool(pool)  # aclose() closes the pool too
    await client.ping()
    for body in SCRIPT_NAMES:  # loaded: a count never includes a first NOSCRIPT and its EVAL
        if len(body) > 40:
            await client.script_load(body)
    counter.reset()
    return client
