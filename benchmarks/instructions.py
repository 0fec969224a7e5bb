"""CPU instructions per request, counted by valgrind's callgrind: the same figure on every
run of the same code, whatever else the machine is doing, where microseconds on a shared
VM move by tens of percent from one minute to the next.

Each variant runs in its own process under callgrind: once with no timed requests (the
start-up, the app, its login and its check), then once per scenario with `requests`
requests more. The difference, divided by `requests`, is that scenario's instructions per
request. Only this process is counted, not Redis: what a request costs the web worker.

``python -m benchmarks.instructions VARIANT SCENARIO REQUESTS PREFIX`` is the process that
runs under callgrind (SCENARIO ``-`` for the start-up alone).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis.asyncio

from .inprocess import RECORD, prepare
from .settings import REDIS_URL
from .variants import build

REFERENCES = {"ref-get": "bare redis.asyncio GET", "ref-mget": "bare redis.asyncio MGET of 2 keys"}
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
START_UP = "-"
PARALLEL = 2


@dataclass
class Instructions:
    requests: int = 0
    per_request: dict[str, dict[str, float]] = field(default_factory=dict)  # variant -> scenario
    references: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None


def measure(
    variants: list[str],
    scenarios: list[str],
    requests: int,
    prefix: str,
    log: Callable[[str], None],
) -> Instructions:
    found = Instructions(requests=requests)
    if shutil.which("valgrind") is None:
        found.skipped = "valgrind is not installed (apt-get install valgrind)"
        log(found.skipped)
        return found

    def count(key: str) -> dict[str, float]:
        base = _collected(key, START_UP, 0, prefix)
        counts: dict[str, float] = {}
        for scenario in ["get"] if key in REFERENCES else scenarios:
            total = _collected(key, scenario, requests, prefix)
            counts[scenario] = round((total - base) / requests)
            log(f"  {key} {scenario}: {counts[scenario]:,} instructions per request")
        return counts

    keys = [*variants, *REFERENCES]
    # Each variant keeps to keys of its own, so two can run at once; counts do not depend
    # on what else runs.
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        for key, counts in zip(keys, pool.map(count, keys), strict=True):
            if key in REFERENCES:
                found.references[key] = counts["get"]
            else:
                found.per_request[key] = counts
    return found


def _collected(key: str, scenario: str, requests: int, prefix: str) -> int:
    command = [
        *("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"),
        *(sys.executable, "-m", "benchmarks.instructions"),
        *(key, scenario, str(requests), prefix),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    match = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"{key} {scenario} under callgrind failed:\n{done.stderr[-2000:]}")
    return int(match.group(1))


async def _run(key: str, scenario: str, requests: int, prefix: str) -> None:
    if key in REFERENCES:
        client = redis.asyncio.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        first, second = f"{prefix}ref:record", f"{prefix}ref:epoch"
        await client.set(first, RECORD, ex=3600)
        await client.set(second, b"0123456789abcdef0123456789abcdef", ex=3600)
        await client.get(first)
        if scenario != START_UP:
            for _ in range(requests):
                if key == "ref-get":
                    await client.get(first)
                else:
                    await client.mget(first, second)
        await client.aclose()
        return
    variant = build(key, prefix)
    actions, _ = await prepare(variant)
    if scenario != START_UP:
        action = actions[scenario]
        for _ in range(requests):
            await action()
    for close in variant.closers:
        await close()


if __name__ == "__main__":
    asyncio.run(_run(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
