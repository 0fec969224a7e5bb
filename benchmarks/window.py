"""The invalidation window of local_cache, across real worker processes.

Several worker processes, each with its own configuration and cache, read one user's session
so that the user's epoch is in their cache. The coordinator (this process, with the cache on
too) calls `ainvalidate_user`; each worker notes when the epoch key left its cache, from
inside the cache's `invalidate` (the listener calls it when Redis's invalidation message
arrives). All timestamps are `time.monotonic_ns()`: CLOCK_MONOTONIC, one clock for every
process of the machine. The window of one round is the last worker's drop minus the moment
`ainvalidate_user` returned; negative when every copy was gone before the call returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from session_middleware import SessionConfig, get_session, sessions

from .driver import Request
from .settings import REDIS_URL, SECRET, Mode
from .variants import CACHE_ENTRIES, COOKIE

USER = "window-user"
IDLE_SECONDS = 0.01  # between the workers' reads and the call: workers wait in their loop
REPORT_TIMEOUT = 10.0
PRIME_ATTEMPTS = 10


@dataclass
class Window:
    workers: int
    rounds: int
    windows_us: list[float] = field(default_factory=list)  # per round: last drop - return
    drops_us: list[list[float]] = field(default_factory=list)  # per round, per worker
    calls_us: list[float] = field(default_factory=list)  # ainvalidate_user, call to return
    whole_drops: int = 0  # drops of a whole cache (a listener lost) instead of the one key


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value with `share` of the values at or below."""
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def _config(prefix: str) -> SessionConfig:
    return sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=f"{prefix}window:",
        session_cookie=COOKIE,
        local_cache=CACHE_ENTRIES,
    )


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """POST logs USER in; GET answers whose session this is."""
    session = get_session(scope)
    if scope["method"] == "POST":
        session.login(USER)
    body = f"{session.user_id}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


# -- a worker process --------------------------------------------------------------------


def worker_main(pipe: Connection, prefix: str) -> None:
    asyncio.run(_serve(pipe, prefix))


async def _serve(pipe: Connection, prefix: str) -> None:
    """Per round: read the session until its epoch is cached, say so, then report the
    monotonic time at which the epoch key left the cache."""
    config = _config(prefix)
    app = config(_app)
    cache = config.redis.async_().cache
    loop = asyncio.get_running_loop()
    watched: dict[str, Any] = {}
    invalidate = cache.invalidate

    def watching_invalidate(keys: Any) -> None:
        invalidate(keys)
        now = time.monotonic_ns()
        key = watched.get("key")
        if key is not None and (keys is None or key in keys):
            watched.update(key=None, at=now, whole=keys is None)
            loop.call_soon_threadsafe(watched["dropped"].set)  # from the listener thread

    cache.invalidate = watching_invalidate
    try:
        while (message := await loop.run_in_executor(None, pipe.recv)) is not None:
            cookie, epoch_key = message
            request = Request("GET", "/", cookie)
            for _ in range(PRIME_ATTEMPTS):
                response = await request.fetch(app)
                if response.body != USER.encode():
                    raise RuntimeError(f"window worker: read answered {response.body!r}")
                if epoch_key in cache.entries:
                    break
            else:
                raise RuntimeError("window worker: the epoch never reached the cache")
            dropped = asyncio.Event()
            watched.update(key=epoch_key, dropped=dropped)
            pipe.send(("ready", cache.hits))
            await asyncio.wait_for(dropped.wait(), REPORT_TIMEOUT)
            if epoch_key in cache.entries:
                raise RuntimeError("window worker: the epoch is still cached after its drop")
            pipe.send(("dropped", watched["at"], watched["whole"]))
    finally:
        await config.aclose()


# -- the coordinator ------------------------------------------------------------------


def _receive(pipe: Connection, expected: str) -> tuple[Any, ...]:
    if not pipe.poll(REPORT_TIMEOUT):
        raise RuntimeError(f"window: no {expected!r} from a worker within {REPORT_TIMEOUT} s")
    message: tuple[Any, ...] = pipe.recv()
    if message[0] != expected:
        raise RuntimeError(f"window: expected {expected!r}, got {message!r}")
    return message


async def _log_in(app: Any) -> str:
    response = await Request("POST", "/").fetch(app)
    value = response.set_cookie(COOKIE)
    if response.status != 200 or not value:
        raise RuntimeError(f"window: login failed ({response.status})")
    return f"{COOKIE}={value}"


async def measure(mode: Mode, prefix: str, log: Callable[[str], None]) -> Window:
    result = Window(workers=mode.window_workers, rounds=mode.window_rounds)
    context = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    processes = []
    config = _config(prefix)
    app = config(_app)
    epoch_key = config.keys.epoch_key(config.keys.user_tag(USER))
    try:
        for _ in range(mode.window_workers):
            mine, theirs = context.Pipe()
            process = context.Process(target=worker_main, args=(theirs, prefix), daemon=True)
            process.start()
            pipes.append(mine)
            processes.append(process)
        for number in range(1 + mode.window_rounds):  # round 0 warms every connection up
            cookie = await _log_in(app)
            for pipe in pipes:
                pipe.send((cookie, epoch_key))
            for pipe in pipes:
                _receive(pipe, "ready")
            await asyncio.sleep(IDLE_SECONDS)
            called = time.monotonic_ns()
            await config.ainvalidate_user(USER)
            returned = time.monotonic_ns()
            reports = [_receive(pipe, "dropped") for pipe in pipes]
            if number == 0:
                continue
            drops = [(at - returned) / 1000 for _, at, _ in reports]
            if min(at for _, at, _ in reports) < called:
                raise RuntimeError("window: a worker dropped the epoch before the call began")
            result.drops_us.append(drops)
            result.windows_us.append(max(drops))
            result.calls_us.append((returned - called) / 1000)
            result.whole_drops += sum(1 for *_, whole in reports if whole)
        log(
            f"  window: {mode.window_rounds} rounds x {mode.window_workers} workers, median "
            f"{percentile(result.windows_us, 0.5):.0f} µs, max {max(result.windows_us):.0f} µs"
        )
    finally:
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join()
        await config.aclose()
    return result
