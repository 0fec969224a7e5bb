"""Redis's own cost: CPU per operation and memory per key, on a redis-server of this part's
own (a free loopback port, no persistence), so INFO commandstats holds nothing else.

CPU: for each operation (login of a new user, logged-in read, write, invalidate_user; and
the read as MULTI, HGETALL, GET, EXEC for comparison), `operations` of them
after CONFIG RESETSTAT. INFO commandstats also counts the commands a script runs, and a
script's own `usec` already includes them, so only top-level commands are summed: the
commands the client sent (counted on the client), each at its `usec_per_call`.
Memory: MEMORY USAGE of the keys one login writes (record, epoch, index), and of what a
second session of the same user adds.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from functools import partial

import redis.asyncio

from .common import Counter, RedisServer, Request, counting
from .inprocess import EPOCH, RECORD, login_cookie
from .results import Results
from .variants import build

Operation = Callable[[int], Awaitable[object]]


def _cpu_per_operation(server: RedisServer, counter: Counter, operations: int) -> float:
    """Microseconds of Redis CPU per operation, from the top-level commands counted."""
    stats = server.client().info("commandstats")
    sent = Tally(name.split(":")[0] for name in counter.commands)
    usec = 0.0
    scripts = [stats.get(f"cmdstat_{name}", {}) for name in ("eval", "evalsha")]
    script_calls = sum(s.get("calls", 0) for s in scripts)
    for name, count in sent.items():
        if name == "EVAL":  # EVALSHA, or EVAL on a NOSCRIPT: all script calls are top-level
            usec += sum(s.get("usec", 0) for s in scripts) * count / max(script_calls, 1)
        else:
            usec += stats.get(f"cmdstat_{name.lower()}", {}).get("usec_per_call", 0.0) * count
    return usec / operations


async def _operations(key: str, server: RedisServer, prefix: str) -> dict[str, Operation]:
    variant = build(key, prefix, server.url)
    users: list[str] = []
    cookies: list[str] = []

    async def login(number: int) -> None:
        users.append(f"user-{number}-{len(users)}")
        cookies.append(await login_cookie(variant, users[-1]))

    async def request(method: str, path: str, number: int) -> None:
        response = await Request(method, path, cookies[number % len(cookies)]).fetch(variant.app)
        if response.status != 200:
            raise RuntimeError(f"{key}: {method} {path} answered {response.status}")

    operations: dict[str, Operation] = {
        "login": login,
        "read": partial(request, "GET", "/read"),
        "write": partial(request, "POST", "/write"),
    }
    if variant.config is not None:
        operations["invalidate"] = lambda n: variant.config.ainvalidate_user(users[n % len(users)])
    operations["close"] = lambda n: variant.close()
    return operations


async def _read_as_multi(server: RedisServer) -> Operation:
    """The logged-in read as MULTI, HGETALL, GET, EXEC on a record HASH and its epoch."""
    client = server.client()
    client.hset("{u}:s:record", mapping=RECORD)
    client.set("{u}:e", EPOCH)
    connection = redis.asyncio.Redis(port=server.port)

    async def read(number: int) -> object:
        return (
            await connection.pipeline(transaction=True)
            .hgetall("{u}:s:record")
            .get("{u}:e")
            .execute()
        )

    return read


def _process_cpu(server: RedisServer) -> float:
    """Seconds of CPU the redis-server process has used (user + system, from getrusage):
    not inflated when a loaded machine takes the CPU away mid-command, as `usec` is."""
    found = server.client().info("cpu")
    return float(found["used_cpu_user"]) + float(found["used_cpu_sys"])


async def _phase(
    results: Results, server: RedisServer, name: str, operation: Operation, operations: int
) -> None:
    await operation(operations)  # warm-up: scripts loaded, connections open
    counter = Counter()
    server.client().config_resetstat()
    before = _process_cpu(server)
    with counting(counter):
        for number in range(operations):
            await operation(number)
    used = (_process_cpu(server) - before) / operations
    results.add(f"redis-cpu/{name}", [_cpu_per_operation(server, counter, operations) * 1e-6])
    results.add(f"redis-process-cpu/{name}", [max(used, 1e-9)])


async def _cpu(results: Results, server: RedisServer, operations: int, round: int) -> None:
    for key in ("ours-redis", "starsessions"):
        ops = await _operations(key, server, f"cost{round}:{key}:")
        for name in ("login", "read", "write", "invalidate"):
            if name in ops:
                suffix = "" if key == "ours-redis" else f"/{key}"
                await _phase(results, server, name + suffix, ops[name], operations)
        await ops["close"](0)
    await _phase(results, server, "read-as-multi", await _read_as_multi(server), operations)


async def _memory(results: Results, server: RedisServer) -> None:
    """With the default key prefix (``sm:``): a key's name is part of its size."""
    admin = server.client()
    for key, pattern in (("ours-redis", "sm:*"), ("starsessions", "starsessions:*")):
        variant = build(key, "", server.url, key_prefix="sm:")
        await login_cookie(variant, "sized-user")
        before = {name: admin.memory_usage(name, samples=0) for name in admin.keys(pattern)}
        await login_cookie(variant, "sized-user")
        after = {name: admin.memory_usage(name, samples=0) for name in admin.keys(pattern)}
        await variant.close()
        for name, size in before.items():
            kind = "record" if ":s:" in name or key == "starsessions" else name[-1]
            kind = {"e": "epoch", "i": "index"}.get(kind, kind)
            results.add(f"memory/{kind}/{key}", [float(size or 1)], unit="byte")
        added = sum(after.values()) - sum(before.values())
        results.add(f"memory/second-session/{key}", [float(max(added, 1))], unit="byte")


def measure(results: Results, operations: int, rounds: int) -> None:
    with RedisServer() as server:
        for number in range(rounds):
            asyncio.run(_cpu(results, server, operations, number))
        asyncio.run(_memory(results, server))
