"""Redis's own cost: CPU per operation and memory per key, on a redis-server of this part's
own (a free loopback port, no persistence), so INFO commandstats holds nothing else.

CPU, in interleaved rounds (the phases' order rotates each round; a figure is the median
over the rounds, so a round in which the machine took the CPU away from redis-server in
the middle of a command does not move it). A phase: `WARM_UP` operations (every session
of its pool read or written once, connections open, scripts loaded), CONFIG RESETSTAT,
then `operations` operations with every command counted on the client. Phases: ours
(login of a new user, logged-in read, write, invalidate_user, and a write with
`local_cache`, whose read is a hit and whose write reads the session back: the Redis CPU
of a write request with the cache), starsessions' (login,
read, write), the read as MULTI, HGETALL, GET, EXEC, and the read beside its floor: each
read followed by a request of the same app with no session middleware whose read is one
bare GETEX (GET's twin, counted apart) of a string as long as a record's fields and
values, so that the floor (``floor-get``) comes to Redis as the read's commands do, in
the same second. The ``-batched`` phases send `BATCH` reads' commands (or GETs of that
string) in one pipeline; the ``-in-flight`` phases run `BATCH` requests of the app at once
(`asyncio.gather`, each on a session of its own), whose commands the multiplexed connection
sends together as they come in the same turn of the event loop: Redis receives them as a
busy server does, with no idle wake-up between two requests
(``read-8-connections-in-flight`` spreads them over 8 apps, each with its own connection,
as 8 workers send them). A read coming alone wakes an idle Redis with its code and data
out of the caches and costs it 2-3 times as much; an idle Redis has the CPU to spare, so
the figure that sizes a Redis tier is the busy one.

INFO commandstats also counts the commands a script runs, and a script's own `usec`
already includes them, so only top-level commands are summed: the commands the client
sent, each at its `usec_per_call`. Where no script was sent, the calls Redis counted must
be the calls the client sent, or the phase fails. Each command's own `usec_per_call` is
kept beside the sum (``redis-cpu-command/PHASE/COMMAND``).
Memory: MEMORY USAGE of the keys one login writes (record, epoch, index), and of what a
second session of the same user adds.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio

from .common import Counter, RedisServer, Request, counting
from .inprocess import login_cookie
from .results import Results
from .scenarios import BATCHED_SUFFIX, FLOOR_COOKIE, IN_FLIGHT_SUFFIX
from .variants import OneRedisGet, Variant, build, build_app

Operation = Callable[[int], Awaitable[object]]
POOL = 64  # sessions read (and, apart, written) in turn by a phase
WARM_UP = POOL
BATCH = 32  # commands of as many reads in one pipeline; requests at once when in flight
SPREAD_OVER = 8  # connections the spread reads in flight come over
FLOOR, FLOOR_COMMAND = "cost:floor", "GETEX"  # the floor's GET, counted apart
ADMIN = Tally({"INFO": 1})  # what the phase itself sends after CONFIG RESETSTAT


def _top_level(commands: list[str]) -> Tally[str]:
    """The commands Redis times on their own, by name: scripts as EVAL, and none of those
    queued between MULTI and EXEC (EXEC's `usec` includes them, as a script's does)."""
    found: Tally[str] = Tally()
    queued = False
    for command in commands:
        name = command.split(":")[0]
        if queued and name != "EXEC":
            continue
        queued = name == "MULTI"
        found[name] += 1
    return found


def _top_level_usec(name: str, stats: dict[str, Any], sent: Tally[str]) -> dict[str, float]:
    """Microseconds of Redis CPU per top-level command sent: its calls at their
    `usec_per_call` (EVAL: every script call's `usec`, EVALSHA's and EVAL's alike).
    `stats` were reset before the phase's first INFO cpu, which they count (`ADMIN`)."""
    scripts = [stats.get(f"cmdstat_{command}", {}) for command in ("eval", "evalsha")]
    script_calls = sum(s.get("calls", 0) for s in scripts)
    nested = script_calls or "EXEC" in sent  # commands run inside count in commandstats too
    usec: dict[str, float] = {}
    for command, count in sent.items():
        if command == "EVAL":
            usec[command] = sum(s.get("usec", 0) for s in scripts) * count / max(script_calls, 1)
            continue
        found = stats.get(f"cmdstat_{command.lower()}", {})
        calls = found.get("calls", 0) - ADMIN[command]
        if not nested and calls != count:
            raise RuntimeError(
                f"redis-cpu/{name}: Redis counted {calls} {command}, "
                f"the client sent {count}: something else reached this redis-server"
            )
        usec[command] = found.get("usec_per_call", 0.0) * count
    return usec


def _process_cpu(admin: redis.Redis) -> float:
    """Seconds of CPU the redis-server process has used (user + system, from getrusage):
    not inflated when a loaded machine takes the CPU away mid-command, as `usec` is."""
    found = admin.info("cpu")
    return float(found["used_cpu_user"]) + float(found["used_cpu_sys"])


async def _sessions(variant: Variant, kind: str) -> list[str]:
    return [await login_cookie(variant, f"{kind}-{number}") for number in range(POOL)]


async def _operations(key: str, server: RedisServer) -> tuple[dict[str, Operation], Variant]:
    """The variant's operations; reads and writes each on a pool of sessions of their own,
    so that a write never changes what a read reads."""
    variant = build(key, f"cost:{key}:", server.url)
    readers, writers = await _sessions(variant, "reader"), await _sessions(variant, "writer")
    users = [f"victim-{number}" for number in range(POOL)]
    for user in users:
        await login_cookie(variant, user)

    async def login(number: int) -> None:
        users.append(f"user-{len(users)}")
        await login_cookie(variant, users[-1])

    def request(method: str, path: str, cookies: list[str]) -> Operation:
        sent = [Request(method, path, cookie) for cookie in cookies]

        async def operation(number: int) -> None:
            response = await sent[number % len(sent)].fetch(variant.app)
            if response.status != 200:
                raise RuntimeError(f"{key}: {method} {path} answered {response.status}")

        return operation

    operations: dict[str, Operation] = {
        "login": login,
        "read": request("GET", "/read", readers),
        "write": request("POST", "/write", writers),
    }
    if variant.config is not None:
        config = variant.config
        operations["invalidate"] = lambda n: config.ainvalidate_user(users[n % len(users)])
    return operations, variant


def _record(admin: redis.Redis, prefix: str) -> tuple[str, str]:
    """A reader's record key and its user's epoch key (``...{tag}:s:id``, ``...{tag}:e``)."""
    for record in admin.scan_iter(match=f"{prefix}*:s:*", count=10_000):
        if str(admin.hget(record, "u")).startswith('"reader-'):
            return record, record.rsplit(":s:", 1)[0] + ":e"
    raise RuntimeError("no reader's record")


async def _comparisons(
    server: RedisServer, admin: redis.Redis
) -> tuple[dict[str, Operation], redis.asyncio.Redis]:
    """On a reader's record and epoch: the read as MULTI/HGETALL/GET/EXEC, and its two
    commands `BATCH` reads at a time in one pipeline; the batched floor: `BATCH` GETs of a
    string as long as the record's fields and values in one pipeline."""
    record, epoch = _record(admin, "cost:ours-redis:")
    size = sum(len(field) + len(value) for field, value in admin.hgetall(record).items())
    admin.set(FLOOR, "x" * size, ex=admin.ttl(record))
    connection = redis.asyncio.Redis(port=server.port)

    def read(pipeline: Any, reads: int) -> Any:
        for _ in range(reads):
            pipeline.hgetall(record)
            pipeline.get(epoch)
        return pipeline.execute()

    async def multi(number: int) -> object:
        return await read(connection.pipeline(transaction=True), 1)

    async def reads_batched(number: int) -> object:
        return await read(connection.pipeline(transaction=False), BATCH)

    async def gets_batched(number: int) -> object:
        pipeline = connection.pipeline(transaction=False)
        for _ in range(BATCH):
            pipeline.get(FLOOR)
        return await pipeline.execute()

    operations: dict[str, Operation] = {
        "read-as-multi": multi,
        "read-commands-batched": reads_batched,
        "floor-get-batched": gets_batched,
    }
    return operations, connection


def _in_flight(operation: Operation) -> Operation:
    """`BATCH` of `operation` at once, numbered apart so that each has a session of its own."""

    async def burst(number: int) -> None:
        await asyncio.gather(*(operation(number * BATCH + each) for each in range(BATCH)))

    return burst


async def _spread_reads(server: RedisServer) -> tuple[Operation, list[Variant]]:
    """Logged-in reads spread over `SPREAD_OVER` apps of their own, each with its multiplexed
    connection, as a Redis serving that many workers receives them: with `_in_flight`, each
    connection carries `BATCH // SPREAD_OVER` requests at once."""
    variants = [build("ours-redis", f"cost:spread-{n}:", server.url) for n in range(SPREAD_OVER)]
    per_worker = BATCH // SPREAD_OVER
    sent = [
        [
            Request("GET", "/read", await login_cookie(variant, f"reader-{n}"))
            for n in range(per_worker)
        ]
        for variant in variants
    ]

    async def read(number: int) -> None:
        worker, turn = number % SPREAD_OVER, number // SPREAD_OVER % per_worker
        response = await sent[worker][turn].fetch(variants[worker].app)
        if response.status != 200:
            raise RuntimeError(f"ours-redis: GET /read answered {response.status}")

    return read, variants


def _floor(server: RedisServer) -> tuple[Operation, Variant]:
    """A request of the app with no session middleware whose read is one bare GETEX (GET
    under a name of its own in commandstats) of a string as long as a record."""
    connection = redis.asyncio.Redis(port=server.port)
    variant = Variant("floor-redis", build_app(OneRedisGet(connection, FLOOR, getex=True), []))
    variant.closers.append(connection.aclose)
    sent = Request("GET", "/read", FLOOR_COOKIE)

    async def floor(number: int) -> None:
        response = await sent.fetch(variant.app)
        if response.status != 200:
            raise RuntimeError(f"floor-redis: GET /read answered {response.status}")

    return floor, variant


def _beside_floor(read: Operation, floor: Operation) -> Operation:
    """Each read followed by the floor, so that both come to Redis alike, side by side."""

    async def both(number: int) -> None:
        await read(number)
        await floor(number)

    return both


async def _phase(
    results: Results, admin: redis.Redis, name: str, operation: Operation, operations: int
) -> None:
    per_call = BATCH if name.endswith((BATCHED_SUFFIX, IN_FLIGHT_SUFFIX)) else 1
    for number in range(max(WARM_UP // per_call, 2)):
        await operation(number)
    calls = max(operations // per_call, 1)
    counter = Counter()
    admin.config_resetstat()
    before = _process_cpu(admin)
    with counting(counter):
        for number in range(calls):
            await operation(number)
    stats = admin.info("commandstats")
    used = _process_cpu(admin) - before
    done = calls * per_call
    sent = _top_level(counter.commands)
    usec = _top_level_usec(name, stats, sent)
    if FLOOR_COMMAND in usec:
        floor = "floor-get" + (IN_FLIGHT_SUFFIX if name.endswith(IN_FLIGHT_SUFFIX) else "")
        results.add(f"redis-cpu/{floor}", [usec.pop(FLOOR_COMMAND) / done * 1e-6])
    if usec:  # else the phase was the floor's own
        results.add(f"redis-cpu/{name}", [sum(usec.values()) / done * 1e-6])
    results.add(f"redis-process-cpu/{name}", [max(used / done, 1e-9)])
    for command, spent in usec.items():
        results.add(f"redis-cpu-command/{name}/{command}", [spent / sent[command] * 1e-6])
    sequence = Tally(counter.commands)
    results.facts[f"redis-cpu/{name}/per_operation"] = {
        "round_trips": counter.round_trips / done,
        **{command: count / done for command, count in sorted(sequence.items())},
    }


async def _cpu(results: Results, server: RedisServer, operations: int, rounds: int) -> None:
    admin = server.client()
    ours, ours_variant = await _operations("ours-redis", server)
    cached, cached_variant = await _operations("ours-cache", server)
    theirs, their_variant = await _operations("starsessions", server)
    compared, connection = await _comparisons(server, admin)
    floor, floor_variant = _floor(server)
    phases: dict[str, Operation] = {name: ours[name] for name in ours}
    phases["write-cached"] = cached["write"]
    phases |= {f"{name}/starsessions": theirs[name] for name in theirs}
    phases |= {"read-beside-floor": _beside_floor(ours["read"], floor), **compared}
    for name in ("read", "write", "login"):
        phases[f"{name}{IN_FLIGHT_SUFFIX}"] = _in_flight(ours[name])
    phases[f"floor-get{IN_FLIGHT_SUFFIX}"] = _in_flight(floor)
    spread, spread_variants = await _spread_reads(server)
    phases[f"read-{SPREAD_OVER}-connections{IN_FLIGHT_SUFFIX}"] = _in_flight(spread)
    order = list(phases)
    try:
        for number in range(rounds):
            turn = number % len(order)
            for name in order[turn:] + order[:turn]:
                await _phase(results, admin, name, phases[name], operations)
    finally:
        await ours_variant.close()
        await cached_variant.close()
        await their_variant.close()
        await floor_variant.close()
        for variant in spread_variants:
            await variant.close()
        await connection.aclose()
        admin.close()


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
        asyncio.run(_cpu(results, server, operations, rounds))
    with RedisServer() as server:
        asyncio.run(_memory(results, server))
