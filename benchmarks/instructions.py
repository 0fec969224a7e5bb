"""CPU instructions per request, counted by valgrind's callgrind: the same figure on every
run of the same code, however busy the machine, where microseconds move by tens of percent.

Each case runs in a process of its own under callgrind twice, with its set-up alone and
with `requests` requests more; the difference over the requests is the figure. Only that
process is counted, not Redis. Cases: a variant's scenario in-process, on asyncio
(``ours-redis:read``) and on uvloop (``ours-redis:read@uvloop``, reported as
``instructions/read/ours-redis/uvloop``), a bare command (``ref:ref-get``), a logged-in
read of a session of a given size or of more sessions than the decoded-record memo holds,
read in turn (``size:100KB``, ``size:many``), and a logged-in read served by uvicorn over
one keep-alive connection (``served:ours-redis``).

``python -m benchmarks.instructions CASE [uvloop] REQUESTS PREFIX`` is the counted process.
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
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from .common import ROOT, Request, free_port
from .inprocess import login_cookie, prepare, references
from .results import Results
from .scenarios import FLOOR_COOKIE, MANY_SESSIONS, NO_SESSION, SIZES
from .variants import build

COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
PARALLEL = 2
# Cases counted more than once, the median reported, and over more requests: the many-sessions
# read's count moves from run to run (each run reads 600 new sessions: other ids and epochs),
# by up to 10% over 200 requests, by about 1% over all 600 read once each.
RUNS = {"size:many": 3}
REQUESTS = {"size:many": MANY_SESSIONS}
START_TIMEOUT = 180.0  # uvicorn starting under callgrind, which runs it some 50x slower


def measure(
    results: Results,
    variants: list[str],
    scenarios: list[str],
    requests: int,
    prefix: str,
    served: bool,
) -> None:
    if shutil.which("valgrind") is None:
        results.facts["instructions/skipped"] = "valgrind is not installed"
        return
    cases = [f"{key}:{scenario}" for key in variants for scenario in scenarios]
    cases += [f"{key}:{scenario}@uvloop" for key in variants for scenario in scenarios]
    cases += ["ref:ref-get", "ref:ref-read-script", "ref:ref-pipeline"]
    cases += [f"size:{size}" for size in [*SIZES, "many"]]
    if served:
        cases += [f"served:{key}" for key in variants if key != "ours-sql"]
    # Compile first: a counted start-up that wrote .pyc files would count that work.
    compiled = [str(ROOT / "benchmarks"), str(ROOT / "session_middleware")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *compiled], check=False)

    def count(run: tuple[str, int]) -> float:
        case, number = run
        own = f"{prefix}i{cases.index(case)}r{number}:"
        collect = _served if case.startswith("served:") else _collected
        counted = REQUESTS.get(case, requests)
        return (collect(case, counted, own) - collect(case, 0, own)) / counted

    runs = [(case, number) for case in cases for number in range(RUNS.get(case, 1))]
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        counted = list(pool.map(count, runs))
    for case in cases:
        figures = [figure for (each, _), figure in zip(runs, counted, strict=True) if each == case]
        case_name, _, loop = case.partition("@")
        kind, _, what = case_name.partition(":")
        name = {
            "ref": f"instructions/{what}",
            "size": f"instructions/read-size/{what}",
            "served": f"instructions/served-read/{what}",
        }.get(kind, f"instructions/{what}/{kind}")
        if loop:
            name += f"/{loop}"
        for figure in figures:  # a round each: the report gives their median and range
            results.add(name, [round(figure)], unit="integer")
        shown = ", ".join(f"{figure:,.0f}" for figure in figures)
        print(f"  {name}: {shown} instructions per request", file=sys.stderr)


def _environment() -> dict[str, str]:
    """The run's environment (its collector setting included), with the same hash layouts
    on every run."""
    return {**os.environ, "PYTHONHASHSEED": "0"}


def _collected(case: str, requests: int, prefix: str) -> int:
    command = [*CALLGRIND, sys.executable, "-m", "benchmarks.instructions"]
    done = subprocess.run(
        [*command, *case.split("@"), str(requests), prefix],
        capture_output=True,
        text=True,
        env=_environment(),
        cwd=ROOT,
        check=False,
    )
    match = COLLECTED.search(done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"{case} under callgrind failed:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def _served(case: str, requests: int, prefix: str) -> int:
    """Instructions of a uvicorn process serving a login and 1 + `requests` reads."""
    key, port = case.partition(":")[2], free_port()
    command = [*CALLGRIND, sys.executable, "-m", "benchmarks.variants"]
    command += [key, str(port), prefix, "auto", "1"]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                time.sleep(0.5)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        cookie = FLOOR_COOKIE
        if key not in NO_SESSION:
            connection.request("POST", "/login")
            response = connection.getresponse()
            response.read()
            cookie = (response.getheader("set-cookie") or "").split(";", 1)[0]
        for _ in range(requests + 1):
            connection.request("GET", "/read", headers={"cookie": cookie})
            response = connection.getresponse()
            if response.status != 200 or not response.read().endswith(b":dark"):
                raise RuntimeError(f"{key}: a read under uvicorn failed")
        connection.close()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=START_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    match = COLLECTED.search(stderr)
    if match is None:
        raise RuntimeError(f"{key} under uvicorn and callgrind failed:\n{stderr[-2000:]}")
    return int(match.group(1))


async def _run(case: str, requests: int, prefix: str) -> None:
    kind, _, what = case.partition(":")
    if kind == "ref":
        actions, client = await references(prefix)
        action = actions[what]
        closers = [client.aclose]
    elif kind == "size":
        variant = build("ours-redis", prefix)
        keys, size = SIZES.get(what, (1, 0))
        count = MANY_SESSIONS if what == "many" else 1
        cookies = [await login_cookie(variant) for _ in range(count)]
        reads = []
        for cookie in cookies:
            await Request("GET", f"/fill/{keys}/{size}", cookie).fetch(variant.app)
            reads.append(partial(Request("GET", "/read", cookie).send, variant.app))
        turn = iter(range(sys.maxsize))

        async def action() -> None:
            await reads[next(turn) % len(reads)]()

        closers = [variant.close]
    else:
        variant = build(kind, prefix)
        action = (await prepare(variant))[what]
        closers = [variant.close]
    await action()
    for _ in range(requests):
        await action()
    for close in closers:
        await close()


def main(argv: list[str]) -> None:
    """CASE [LOOP] REQUESTS PREFIX: run them, on asyncio or LOOP (uvloop)."""
    case, *loop, requests, prefix = argv
    running = _run(case, int(requests), prefix)
    if loop == ["uvloop"]:
        import uvloop

        uvloop.run(running)
    else:
        asyncio.run(running)


if __name__ == "__main__":
    main(sys.argv[1:])
