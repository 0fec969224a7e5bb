"""CPU instructions per request, counted by valgrind's callgrind: the same figure on every
run of the same code, whatever else the machine is doing, where microseconds on a shared
VM move by tens of percent from one minute to the next.

Each variant runs in its own process under callgrind: once with no timed requests (the
start-up, the app, its login and its check), then once per scenario with `requests`
requests more. The difference, divided by `requests`, is that scenario's instructions per
request. Only this process is counted, not Redis: what a request costs the web worker.

Then the same for the logged-in read served by uvicorn (benchmarks.serve, under callgrind),
sent over one keep-alive connection one request at a time: what the whole web worker
(server, HTTP parser, event loop, app) spends on a request, the CPU side of the
end-to-end figure without its noise.

``python -m benchmarks.instructions VARIANT SCENARIO REQUESTS PREFIX`` is the process that
runs under callgrind (SCENARIO ``-`` for the start-up alone).
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .endtoend import ROOT, free_port
from .inprocess import prepare, reference_actions
from .scenarios import FLOOR_COOKIE
from .variants import COOKIE, build

# Their actions in inprocess: a GET, an MGET, the READ script and a HGETALL + GET pipeline.
REFERENCES = {
    "ref-get": "get",
    "ref-mget": "mget",
    "ref-read": "read_script",
    "ref-pipeline": "pipeline",
}
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
_ENVIRONMENT = {**os.environ, "PYTHONHASHSEED": "0"}  # the same hash layouts on every run
START_UP = "-"
SERVED = "served"
PARALLEL = 2
START_TIMEOUT = 180.0  # uvicorn starting under callgrind, which runs it some 50x slower


@dataclass
class Instructions:
    requests: int = 0
    per_request: dict[str, dict[str, float]] = field(default_factory=dict)  # variant -> scenario
    references: dict[str, float] = field(default_factory=dict)
    served: dict[str, float] = field(default_factory=dict)  # variant -> read under uvicorn
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
        if key not in REFERENCES:
            served = _served(key, requests, prefix) - _served(key, 0, prefix)
            counts[SERVED] = round(served / requests)
            log(f"  {key} read under uvicorn: {counts[SERVED]:,} instructions per request")
        return counts

    # Compile what the counted processes import first: a start-up run that wrote .pyc files
    # for freshly edited modules would count that work, and every figure would come out low
    # (a negative floor, once).
    compiled = [str(ROOT / "benchmarks"), str(ROOT / "session_middleware")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *compiled], check=False)
    keys = [*variants, *REFERENCES]
    # Each variant keeps to keys of its own, so two can run at once; counts do not depend
    # on what else runs.
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        for key, counts in zip(keys, pool.map(count, keys), strict=True):
            if key in REFERENCES:
                found.references[key] = counts["get"]
            else:
                found.served[key] = counts.pop(SERVED)
                found.per_request[key] = counts
    return found


def _collected(key: str, scenario: str, requests: int, prefix: str) -> int:
    command = [
        *CALLGRIND,
        *(sys.executable, "-m", "benchmarks.instructions"),
        *(key, scenario, str(requests), prefix),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=_ENVIRONMENT, check=False)
    match = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"{key} {scenario} under callgrind failed:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def _served(key: str, requests: int, prefix: str) -> int:
    """Instructions of a uvicorn process serving `requests` logged-in reads (and its start,
    a login and one read, which the caller subtracts)."""
    port = free_port()
    command = [*CALLGRIND, sys.executable, "-m", "benchmarks.serve", key, str(port), prefix]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=_ENVIRONMENT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(port, process)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        cookie = FLOOR_COOKIE
        if key != "floor":
            set_cookie = _send(connection, "POST", "/login", None).getheader("set-cookie") or ""
            cookie = set_cookie.split(";", 1)[0]
            if not cookie.startswith(f"{COOKIE}="):
                raise RuntimeError(f"{key}: login under uvicorn gave no cookie")
        for _ in range(requests + 1):
            if _send(connection, "GET", "/read", cookie).status != 200:
                raise RuntimeError(f"{key}: a read under uvicorn failed")
        connection.close()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=START_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    match = _COLLECTED.search(stderr)
    if match is None:
        raise RuntimeError(f"{key} under uvicorn and callgrind failed:\n{stderr[-2000:]}")
    return int(match.group(1))


def _wait_for(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"uvicorn under callgrind did not answer on port {port}")


def _send(
    connection: http.client.HTTPConnection, method: str, path: str, cookie: str | None
) -> http.client.HTTPResponse:
    connection.request(method, path, headers={"cookie": cookie} if cookie else {})
    response = connection.getresponse()
    response.read()
    return response


async def _run(key: str, scenario: str, requests: int, prefix: str) -> None:
    if key in REFERENCES:
        actions, clients = await reference_actions(prefix)
        await actions[REFERENCES[key]]()
        if scenario != START_UP:
            for _ in range(requests):
                await actions[REFERENCES[key]]()
        for client in clients:
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
