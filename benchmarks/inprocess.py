"""In-process cost: each variant's app driven directly (no HTTP client in the loop), seconds
per request in interleaved rounds, beside bare redis.asyncio commands; then the Redis round
trips, commands and writes one request sends, counted; and the garbage collections a request
sets off when many are in flight at once (`collections_in_flight`)."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from functools import partial

import redis.asyncio

from session_middleware._protocol import lua_scripts

from .common import REDIS_URL, Counter, Request, counting
from .results import Results
from .scenarios import FLOOR_COOKIE, INVALIDATE, NO_SESSION, READ, REQUESTS, WRITE, Scenario
from .variants import Variant, build

Action = Callable[[], Awaitable[object]]
WARMUP = 50
COUNTED = 10
IN_FLIGHT = 32  # requests at once, as wrk's connections in the end-to-end part
IN_FLIGHT_BURSTS = 50
HELD_BURSTS = 9  # the median is taken
EPOCH = "0123456789abcdef0123456789abcdef"
# A logged-in record as session_middleware writes it: a HASH, one field per key.
RECORD = {"c": "1795000000.0", "x": "1796209600.0", "r": "1795000000.0", "u": '"user-0"'}
RECORD.update({"e": EPOCH, "d:theme": '"dark"', "d:cart": "[101,202,303]"})


async def login_cookie(variant: Variant, user: str = "") -> str:
    """Log in through the app once; the Cookie header that carries the new session."""
    response = await Request("POST", f"/login?user={user}").fetch(variant.app)
    cookie = response.cookie()
    if response.status != 200 or cookie is None:
        raise RuntimeError(f"{variant.key}: login failed ({response.status})")
    return cookie


async def prepare(variant: Variant) -> dict[str, Action]:
    """Each scenario of the variant as a no-argument coroutine, checked once."""
    cookie = FLOOR_COOKIE if variant.key in NO_SESSION else await login_cookie(variant)
    actions: dict[str, Action] = {}
    for scenario in REQUESTS:
        request = Request(scenario.method, scenario.path, cookie if scenario.logged_in else None)
        actions[scenario.key] = partial(request.send, variant.app)
    if variant.key != "floor":
        body = (await Request("GET", "/read", cookie).fetch(variant.app)).body
        if not body.endswith(b":dark"):
            raise RuntimeError(f"{variant.key}: logged-in read answered {body!r}")
    if variant.config is not None:
        actions[INVALIDATE] = partial(variant.config.ainvalidate_user, "user-invalidated")
    return actions


async def references(prefix: str) -> tuple[dict[str, Action], redis.asyncio.Redis]:
    """A bare GET, an MGET of two keys, one EVAL of the READ script on a record and its
    epoch (what a logged-in read sends), and a pipeline of HGETALL + GET of the same."""
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    record, epoch = f"{prefix}ref:{{t}}:s:hash", f"{prefix}ref:{{t}}:e"
    await client.hset(record, mapping=RECORD)
    await client.set(epoch, EPOCH, ex=3600)
    await client.expire(record, 3600)

    async def pipelined() -> object:
        return await client.pipeline(transaction=False).hgetall(record).get(epoch).execute()

    return {
        "ref-get": partial(client.get, epoch),
        "ref-mget": partial(client.mget, epoch, epoch),
        "ref-read-script": partial(client.eval, lua_scripts.READ, 2, record, epoch),
        "ref-pipeline": pipelined,
    }, client


async def time_batch(action: Action, iterations: int) -> float:
    """Seconds per call over `iterations` calls in a row (GC off, as timeit does)."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(iterations):
            await action()
        return (time.perf_counter() - start) / iterations
    finally:
        gc.enable()


async def measure(
    results: Results, variants: list[str], prefix: str, rounds: int, iterations: int
) -> None:
    built = [build(key, prefix) for key in variants]
    refs, client = await references(prefix)
    try:
        prepared = {variant.key: await prepare(variant) for variant in built}
        for actions in [*prepared.values(), refs]:
            for action in actions.values():
                for _ in range(WARMUP):
                    await action()
        for number in range(rounds):
            for name, action in refs.items():
                results.add(f"inprocess/{name}", [await time_batch(action, iterations)])
            order = built[number % len(built) :] + built[: number % len(built)]
            for scenario in [s.key for s in REQUESTS] + [INVALIDATE]:
                for variant in order:
                    if (action := prepared[variant.key].get(scenario)) is not None:
                        value = await time_batch(action, iterations)
                        results.add(f"inprocess/{scenario}/{variant.key}", [value])
        for variant in built:
            for scenario, action in prepared[variant.key].items():
                await count(results, f"{scenario}/{variant.key}", action)
            if variant.key not in NO_SESSION:
                for in_flight in (READ, WRITE):
                    await collections_in_flight(results, variant, in_flight)
            if variant.key == "ours-cache":  # the first read of a new session: a miss
                fresh = Request("GET", "/read", await login_cookie(variant))
                await count(results, "read-first/ours-cache", partial(fresh.send, variant.app), 1)
    finally:
        for variant in built:
            await variant.close()
        await client.aclose()


async def count(results: Results, name: str, action: Action, requests: int = COUNTED) -> None:
    """Round trips, commands and writes per request of `action`, and the first's commands."""
    counter = Counter()
    with counting(counter):
        for _ in range(requests):
            await action()
    for what in ("round_trips", "commands", "writes"):
        total = counter.round_trips if what == "round_trips" else len(counter.commands)
        total = counter.writes if what == "writes" else total
        results.facts[f"counts/{name}/{what}"] = total / requests
    results.facts[f"counts/{name}/sequence"] = " ".join(
        counter.commands[: len(counter.commands) // requests]
    )


async def collections_in_flight(results: Results, variant: Variant, scenario: Scenario) -> None:
    """Young-generation garbage collections per request, `IN_FLIGHT` requests of as many
    sessions at once (`asyncio.gather`), `IN_FLIGHT_BURSTS` times. Python collects when the
    container objects allocated and not yet freed pass a threshold (700 by default, 2,000
    from 3.13): a request that awaits I/O while the app's whole stack of coroutines is
    alive (a commit, sent when the response starts) holds them, and enough such requests at
    once set off collections that find nothing to free, but cost the time to look, and
    promote what they find until a full collection runs. A count, not a time: the same on
    any machine."""
    cookies = [await login_cookie(variant, f"in-flight-{n}") for n in range(IN_FLIGHT)]
    requests = [Request(scenario.method, scenario.path, cookie) for cookie in cookies]

    async def burst() -> None:
        await asyncio.gather(*(request.send(variant.app) for request in requests))

    for _ in range(5):
        await burst()
    started = [0, 0, 0]

    def tally(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[info["generation"]] += 1

    gc.collect()
    gc.callbacks.append(tally)
    try:
        for _ in range(IN_FLIGHT_BURSTS):
            await burst()
    finally:
        gc.callbacks.remove(tally)
    done = IN_FLIGHT * IN_FLIGHT_BURSTS
    for generation, collections in enumerate(started):
        results.facts[f"gc/{scenario.key}/{variant.key}/gen{generation}"] = collections / done
    held = sorted([await held_at_peak(burst) for _ in range(HELD_BURSTS)])
    results.facts[f"gc/{scenario.key}/{variant.key}/held"] = held[len(held) // 2] / IN_FLIGHT


async def held_at_peak(burst: Callable[[], Awaitable[None]]) -> int:
    """The most container objects alive at once during `burst` beyond those alive before
    it: what its requests hold while they await I/O. The collector is off meanwhile, so its
    count of objects allocated and not freed (`gc.get_count()[0]`, what sets off a young
    collection) is sampled at every turn of the event loop and never reset. Unlike the
    collections, which come in whole numbers a burst, it moves with every object."""
    loop = asyncio.get_running_loop()
    peak, sampling = 0, True

    def sample() -> None:
        nonlocal peak
        peak = max(peak, gc.get_count()[0])
        if sampling:
            loop.call_soon(sample)

    gc.collect()
    gc.disable()
    try:
        loop.call_soon(sample)
        await burst()
    finally:
        sampling = False
        gc.enable()
    await asyncio.sleep(0)  # the last sample runs, and stops
    return peak
