"""The invalidation window of local_cache, across real worker processes.

Several worker processes, each with its own configuration and cache, read one user's session
so that the user's epoch is in their cache. The coordinator (this process, with the cache on
too) calls `ainvalidate_user`. All timestamps are `time.monotonic_ns()`: CLOCK_MONOTONIC, one
clock for every process of the machine. Three kinds of round:

- idle: the workers wait in their event loop. Each notes when the epoch key left its cache,
  from inside the cache's `invalidate` (the listener calls it when Redis's invalidation
  message arrives). The window of a round is the last worker's drop minus the moment
  `ainvalidate_user` returned; negative when every copy was gone before the call returned.
- busy: the same, while two clients keep each worker's handlers burning 20 ms of CPU per
  request (the app's handlers, not the listener, hold the event loop).
- partition: the workers reach Redis through a TCP proxy, which freezes all their traffic
  (connections stay open, nothing flows) just before the coordinator, which reaches Redis
  directly, invalidates. Each worker reads the session in a loop, a millisecond apart, until
  it is no longer served as the user (a 503 once Redis cannot be reached). The window of a
  round is the start of the last read served as the user, on any worker, minus the moment
  `ainvalidate_user` returned: the longest an invalidated session was still served.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import sys
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from session_middleware import SessionConfig, get_session, sessions
from session_middleware.testing import FreezingProxy

from .common import COOKIE, REDIS_URL, SECRET, Request

USER = "window-user"
IDLE_SECONDS = 0.01  # between the workers' reads and the call: workers wait in their loop
REPORT_TIMEOUT = 10.0
PRIME_SECONDS = 10.0  # after a partition, a worker's listener takes a few seconds to return
BUSY_CLIENTS = 2  # per worker, in busy rounds
BUSY_HANDLER_SECONDS = 0.020  # CPU one busy request burns
READ_GAP_SECONDS = 0.001  # between a partition round's reads


@dataclass
class Window:
    workers: int
    rounds: int
    windows_us: list[float] = field(default_factory=list)  # per round: last drop - return
    drops_us: list[list[float]] = field(default_factory=list)  # per round, per worker
    calls_us: list[float] = field(default_factory=list)  # ainvalidate_user, call to return
    whole_drops: int = 0  # drops of a whole cache (a listener lost) instead of the one key
    busy_windows_us: list[float] = field(default_factory=list)  # the same, handlers busy
    partition_windows_us: list[float] = field(default_factory=list)  # last served - return
    partition_answers: dict[str, int] = field(default_factory=dict)  # the first read refused


def _config(prefix: str, url: str = REDIS_URL) -> SessionConfig:
    return sessions(
        secret_key=SECRET,
        redis_url=url,
        key_prefix=f"{prefix}window:",
        session_cookie=COOKIE,
        local_cache=10_000,
    )


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """POST logs USER in; GET answers whose session this is; /busy burns CPU first."""
    session = get_session(scope)
    if scope["method"] == "POST":
        session.login(USER)
    if scope["path"] == "/busy":
        until = time.perf_counter() + BUSY_HANDLER_SECONDS
        while time.perf_counter() < until:
            pass
    body = f"{session.user_id}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


# -- a worker process --------------------------------------------------------------------


def worker_main(pipe: Connection, prefix: str, url: str) -> None:
    asyncio.run(_serve(pipe, prefix, url))


async def _serve(pipe: Connection, prefix: str, url: str) -> None:
    """Per round: read the session until its epoch is cached, say so, then report when the
    epoch key left the cache (idle, busy) or the last read served as the user (partition)."""
    config = _config(prefix, url)
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
            cookie, epoch_key, kind = message
            request = Request("GET", "/", cookie)
            await _prime(app, request, cache, epoch_key)
            if kind == "partition":
                pipe.send(("ready", cache.hits))
                pipe.send(("refused", *await _read_until_refused(app, request)))
                continue
            dropped = asyncio.Event()
            watched.update(key=epoch_key, dropped=dropped)
            stop = asyncio.Event()
            count = BUSY_CLIENTS if kind == "busy" else 0
            busy = [_burn(app, cookie, stop) for _ in range(count)]
            pipe.send(("ready", cache.hits))
            try:
                await asyncio.wait_for(dropped.wait(), REPORT_TIMEOUT)
            finally:
                stop.set()  # not cancel(): on Python 3.11 a cancel can be lost in wait_for
                await asyncio.gather(*busy)
            if kind == "idle" and epoch_key in cache.entries:  # busy: re-read, the new one
                raise RuntimeError("window worker: the epoch is still cached after its drop")
            pipe.send(("dropped", watched["at"], watched["whole"]))
    finally:
        await config.aclose()


async def _prime(app: Any, request: Request, cache: Any, epoch_key: str) -> None:
    deadline = time.monotonic() + PRIME_SECONDS
    while time.monotonic() < deadline:
        response = await request.fetch(app)
        if response.body == USER.encode() and epoch_key in cache.entries:
            return
        if response.status != 503 and response.body != USER.encode():
            raise RuntimeError(f"window worker: read answered {response.body!r}")
        await asyncio.sleep(0.01)
    raise RuntimeError("window worker: the epoch never reached the cache")


def _burn(app: Any, cookie: str, stop: asyncio.Event) -> asyncio.Task[None]:
    """A client whose every request keeps the event loop for BUSY_HANDLER_SECONDS."""
    busy = Request("GET", "/busy", cookie)

    async def loop() -> None:
        while not stop.is_set():
            await busy.send(app)
            await asyncio.sleep(0)  # as a server does between requests

    return asyncio.ensure_future(loop())


async def _read_until_refused(app: Any, request: Request) -> tuple[int, str]:
    """(start of the last read served as USER, what the first other answer was)."""
    last = time.monotonic_ns()
    deadline = time.monotonic() + REPORT_TIMEOUT
    while time.monotonic() < deadline:
        started = time.monotonic_ns()
        response = await request.fetch(app)
        if response.body != USER.encode():
            return last, f"{response.status} {response.body[:20]!r}"
        last = started
        await asyncio.sleep(READ_GAP_SECONDS)
    return last, "still served"


# -- the coordinator ------------------------------------------------------------------


def _receive(pipe: Connection, expected: str) -> tuple[Any, ...]:
    if not pipe.poll(REPORT_TIMEOUT + PRIME_SECONDS):
        raise RuntimeError(f"window: no {expected!r} from a worker within the timeout")
    message: tuple[Any, ...] = pipe.recv()
    if message[0] != expected:
        raise RuntimeError(f"window: expected {expected!r}, got {message!r}")
    return message


async def _log_in(app: Any) -> str:
    response = await Request("POST", "/").fetch(app)
    cookie = response.cookie()
    if response.status != 200 or cookie is None:
        raise RuntimeError(f"window: login failed ({response.status})")
    return cookie


class Workers:
    """Worker processes reaching Redis at `url`, and the coordinator's own configuration."""

    def __init__(self, count: int, prefix: str, url: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes = []
        self.config = _config(prefix)
        self.app = self.config(_app)
        self.epoch_key = self.config.keys.epoch_key(self.config.keys.user_tag(USER))
        for _ in range(count):
            mine, theirs = context.Pipe()
            process = context.Process(target=worker_main, args=(theirs, prefix, url), daemon=True)
            process.start()
            self.pipes.append(mine)
            self.processes.append(process)

    async def start_round(self, kind: str) -> None:
        """Log USER in anew; every worker has the epoch cached when this returns."""
        cookie = await _log_in(self.app)
        for pipe in self.pipes:
            pipe.send((cookie, self.epoch_key, kind))
        for pipe in self.pipes:
            _receive(pipe, "ready")
        await asyncio.sleep(IDLE_SECONDS)

    async def invalidate(self) -> tuple[int, int]:
        called = time.monotonic_ns()
        await self.config.ainvalidate_user(USER)
        return called, time.monotonic_ns()

    async def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join()
        await self.config.aclose()


async def _drop_rounds(workers: Workers, kind: str, rounds: int, result: Window) -> None:
    for number in range(1 + rounds):  # round 0 warms every connection up
        await workers.start_round(kind)
        called, returned = await workers.invalidate()
        reports = [_receive(pipe, "dropped") for pipe in workers.pipes]
        if number == 0:
            continue
        if min(at for _, at, _ in reports) < called:
            raise RuntimeError("window: a worker dropped the epoch before the call began")
        drops = [(at - returned) / 1000 for _, at, _ in reports]
        if kind == "busy":
            result.busy_windows_us.append(max(drops))
            continue
        result.drops_us.append(drops)
        result.windows_us.append(max(drops))
        result.calls_us.append((returned - called) / 1000)
        result.whole_drops += sum(1 for *_, whole in reports if whole)


async def _partition_rounds(
    workers: Workers, proxy: FreezingProxy, rounds: int, result: Window
) -> None:
    for _ in range(rounds):
        await workers.start_round("partition")
        proxy.freeze()
        try:
            _, returned = await workers.invalidate()
            reports = [_receive(pipe, "refused") for pipe in workers.pipes]
        finally:
            proxy.thaw()
        result.partition_windows_us.append(max((last - returned) / 1000 for _, last, _ in reports))
        for *_, answer in reports:
            result.partition_answers[answer] = result.partition_answers.get(answer, 0) + 1


def percentile(values: list[float], share: float) -> float:
    """Nearest rank: the smallest value with `share` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def _summary(label: str, values: list[float]) -> str:
    return (
        f"  window, {label}: {len(values)} rounds, median {percentile(values, 0.5):.0f} µs, "
        f"p99 {percentile(values, 0.99):.0f} µs, max {max(values):.0f} µs"
    )


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def measure(results: Any, prefix: str, rounds: int, count: int) -> None:
    result = Window(workers=count, rounds=rounds)
    workers = Workers(count, prefix, REDIS_URL)
    try:
        await _drop_rounds(workers, "idle", rounds, result)
        log(_summary(f"{count} idle workers", result.windows_us))
        await _drop_rounds(workers, "busy", rounds, result)
        log(_summary("handlers burning 20 ms of CPU", result.busy_windows_us))
    finally:
        await workers.close()
    proxy = FreezingProxy.in_front_of(REDIS_URL).start()
    workers = Workers(count, prefix, proxy.url)
    try:
        await _partition_rounds(workers, proxy, max(3, rounds // 20), result)
        log(_summary("silent partition", result.partition_windows_us))
    finally:
        await workers.close()
        proxy.stop()
    results.facts["window"] = asdict(result)
