"""In-process cost: each variant's app driven directly, microseconds per request, and the
Redis commands and round trips each request costs (counted, not guessed)."""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import redis.asyncio
import sqlalchemy

from session_middleware._protocol import lua_scripts as scripts

from .counting import Counter, counted_client, counting_connections
from .driver import Request
from .scenarios import FLOOR_COOKIE, INVALIDATE, INVALIDATED_USER, REQUESTS
from .settings import REDIS_URL, Mode
from .variants import COOKIE, Variant, build

Action = Callable[[], Awaitable[object]]
WARMUP = 50
COUNTED_REQUESTS = 10

REFERENCES = {
    "get": "bare redis.asyncio GET",
    "get_timeout": "bare GET, socket_timeout=2 (the client session_middleware builds)",
    "mget": "bare MGET of 2 keys",
    "read_script": "EVAL of session_middleware's READ script (a record HASH and its epoch)",
    "pipeline": "pipeline of HGETALL + GET (the same hash and epoch)",
}
RECORD = b'{"v":1,"c":1.0,"x":2.0,"r":1.0,"u":"user-0","d":{"theme":"dark","cart":[1,2,3]},"e":"x"}'
EPOCH = b"0123456789abcdef0123456789abcdef"
# A logged-in record as session_middleware writes it (_protocol/records.py): one field per key.
RECORD_FIELDS = {
    "c": "1795000000.0",
    "x": "1796209600.0",
    "r": "1795000000.0",
    "u": '"user-0"',
    "e": EPOCH.decode(),
    "d:theme": '"dark"',
    "d:cart": "[101,202,303]",
}


@dataclass
class Counts:
    round_trips: float
    commands: float
    writes: float
    sequence: list[str]
    sql_queries: float = 0.0
    cache_hits: float | None = None  # local_cache hits per request (ours-cache)
    first: Counts | None = None  # ours-cache: the first read of a new session (a cache miss)


@dataclass
class InProcess:
    times: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # variant -> scenario
    references: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, dict[str, Counts]] = field(default_factory=dict)
    cookies: dict[str, int] = field(default_factory=dict)  # logged-in cookie length


async def login_cookie(variant: Variant) -> str:
    """Log in through the app once; the Cookie header that carries the new session."""
    response = await Request("POST", "/login").fetch(variant.app)
    value = response.set_cookie(COOKIE)
    if response.status != 200 or not value:
        raise RuntimeError(f"{variant.key}: login failed ({response.status} {response.headers})")
    return f"{COOKIE}={value}"


async def prepare(variant: Variant) -> tuple[dict[str, Action], str | None]:
    """Each scenario of the variant as a no-argument coroutine, and its logged-in cookie."""
    cookie = None if variant.key == "floor" else await login_cookie(variant)
    actions: dict[str, Action] = {}
    for scenario in REQUESTS:
        header = None
        if scenario.logged_in:
            header = FLOOR_COOKIE if cookie is None else cookie
        request = Request(scenario.method, scenario.path, header)
        actions[scenario.key] = partial(request.send, variant.app)
    if cookie is not None:
        response = await Request("GET", "/read", cookie).fetch(variant.app)
        if response.body != b"user-0:dark":
            raise RuntimeError(f"{variant.key}: logged-in read answered {response.body!r}")
    if variant.invalidate is not None:
        actions[INVALIDATE] = partial(variant.invalidate, INVALIDATED_USER)
    return actions, cookie


async def time_batch(action: Action, iterations: int) -> float:
    """Microseconds per call, over `iterations` calls in a row (GC off, as timeit does)."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(iterations):
            await action()
        return (time.perf_counter() - start) / iterations * 1e6
    finally:
        gc.enable()


async def reference_actions(prefix: str) -> tuple[dict[str, Action], list[redis.asyncio.Redis]]:
    plain = redis.asyncio.Redis.from_url(REDIS_URL)
    timed = redis.asyncio.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    first, second = f"{prefix}ref:{{t}}:record", f"{prefix}ref:{{t}}:e"
    record = f"{prefix}ref:{{t}}:s:hash"
    await plain.set(first, RECORD, ex=3600)
    await plain.set(second, EPOCH, ex=3600)
    for name, value in RECORD_FIELDS.items():
        await plain.hset(record, name, value)
    await plain.expire(record, 3600)

    async def pipelined() -> object:
        pipe = plain.pipeline(transaction=False)
        pipe.hgetall(record)
        pipe.get(second)
        return await pipe.execute()

    actions: dict[str, Action] = {
        "get": partial(plain.get, first),
        "get_timeout": partial(timed.get, first),
        "mget": partial(plain.mget, first, second),
        "read_script": partial(plain.eval, scripts.READ, 2, record, second),
        "pipeline": pipelined,
    }
    return actions, [plain, timed]


async def measure(
    mode: Mode, variants: list[str], prefix: str, log: Callable[[str], None]
) -> InProcess:
    result = InProcess()
    built = [build(key, prefix) for key in variants]
    references, clients = await reference_actions(prefix)
    try:
        prepared: dict[str, dict[str, Action]] = {}
        for variant in built:
            actions, cookie = await prepare(variant)
            prepared[variant.key] = actions
            if cookie is not None:
                result.cookies[variant.key] = len(cookie) - len(COOKIE) - 1
            result.times[variant.key] = {name: [] for name in actions}
            for action in actions.values():
                for _ in range(WARMUP):
                    await action()
        for action in references.values():
            for _ in range(WARMUP):
                await action()
        result.references = {name: [] for name in references}
        scenarios = [s.key for s in REQUESTS] + [INVALIDATE]
        for repeat in range(mode.repeats):
            for name, action in references.items():
                result.references[name].append(await time_batch(action, mode.iterations))
            # Rotate the order each repeat so no variant always runs first or last.
            order = built[repeat % len(built) :] + built[: repeat % len(built)]
            for scenario in scenarios:
                for variant in order:
                    timed = prepared[variant.key].get(scenario)
                    if timed is not None:
                        figure = await time_batch(timed, mode.iterations)
                        result.times[variant.key][scenario].append(figure)
            log(f"  in-process repeat {repeat + 1}/{mode.repeats} done")
        for variant in built:
            for scenario in prepared[variant.key]:
                result.counts.setdefault(variant.key, {})[scenario] = await count(
                    variant.key, scenario, prefix
                )
    finally:
        for variant in built:
            await variant.close()
        for client in clients:
            await client.aclose()
    return result


async def count(key: str, scenario: str, prefix: str) -> Counts:
    """Round trips and commands of one request of `scenario`, through a counting client."""
    if key == "ours-cache":
        return await count_cached(scenario, prefix)
    counter = Counter()
    client = await counted_client(counter)
    variant = build(key, prefix, client)
    queries = 0

    def count_query(*args: object) -> None:
        nonlocal queries
        queries += 1

    if variant.sql_engine is not None:
        sqlalchemy.event.listen(
            variant.sql_engine.sync_engine, "before_cursor_execute", count_query
        )
    try:
        actions, _ = await prepare(variant)
        action = actions[scenario]
        await action()
        counter.reset()
        queries = 0
        for _ in range(COUNTED_REQUESTS):
            await action()
        per = len(counter.commands) // COUNTED_REQUESTS
        return Counts(
            round_trips=counter.round_trips / COUNTED_REQUESTS,
            commands=len(counter.commands) / COUNTED_REQUESTS,
            writes=counter.writes / COUNTED_REQUESTS,
            sequence=counter.commands[:per],
            sql_queries=queries / COUNTED_REQUESTS,
        )
    finally:
        await variant.close()
        await client.aclose()


async def count_cached(scenario: str, prefix: str) -> Counts:
    """The same for ours-cache, whose tracking connections cannot be handed in: every
    redis.asyncio connection of the process is counted instead (nothing else runs), and the
    cache's own hit counter says which requests it served. For the read, the first read of
    a new session is counted apart from the repeat reads."""
    variant = build("ours-cache", prefix)
    counter = Counter()
    try:
        actions, _ = await prepare(variant)
        cache = variant.cache()
        action = actions[scenario]
        await action()
        first = None
        if scenario == "read":
            fresh = Request("GET", "/read", await login_cookie(variant))
            hits = cache.hits
            with counting_connections(counter):
                response = await fresh.fetch(variant.app)
            if not response.body.startswith(b"user-"):
                raise RuntimeError(f"ours-cache: first read answered {response.body!r}")
            first = _counts(counter, 1, cache.hits - hits)
            counter.reset()
        hits = cache.hits
        with counting_connections(counter):
            for _ in range(COUNTED_REQUESTS):
                await action()
        counts = _counts(counter, COUNTED_REQUESTS, cache.hits - hits)
        counts.first = first
        return counts
    finally:
        await variant.close()


def _counts(counter: Counter, requests: int, hits: int) -> Counts:
    return Counts(
        round_trips=counter.round_trips / requests,
        commands=len(counter.commands) / requests,
        writes=counter.writes / requests,
        sequence=counter.commands[: len(counter.commands) // requests],
        cache_hits=hits / requests,
    )
