"""End to end: each variant under uvicorn on 127.0.0.1, `wrk -t1` on loopback.

Cells, grouped by what is compared (one scenario on one loop and number of workers, a cell
a variant), interleaved round by round: each round runs every group, the groups' order and
the variants' within a group rotating; a group runs side by side in mirrored order (A B B
A), so the rates a ratio divides were taken seconds apart (see _run_side_by_side).

- every variant and request scenario on uvloop, one worker (``e2e/<scenario>/<variant>/uvloop/1w``);
- the read and the write on asyncio (``.../asyncio/1w``) and with two workers (``.../uvloop/2w``);
- ``read-many``: reads rotating over more sessions than the decoded-record memo holds;
- the write of ours with and without ``local_cache`` at 1 and 4 connections too
  (``.../uvloop/1w/4c``);
- ``contention``: every connection (1 to 32) writing one session, a key each or one shared
  key, starsessions against ours; afterwards the session's counters say how many of the
  answered increments it kept.

Logged-in scenarios rotate over a pool of sessions so that concurrent requests rarely share
one, as with real users. A figure is seconds per request (1 ÷ wrk's rate); any non-2xx
answer or socket error fails a run, except in contention, where they are counted.

Beside each rate, the CPU time the server's processes (uvicorn and its workers, from
/proc) spent per request answered (``e2e-cpu/...``): what a request costs the worker,
whatever else the machine runs. wrk and Redis share the machine's CPUs with the worker
here; where Redis runs on its own hosts, this is the figure that sizes the app's.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from .common import COOKIE, ROOT, free_port
from .results import Results
from .scenarios import (
    CONNECTIONS,
    CONTENTION_LEVELS,
    E2E,
    FEW_CONNECTIONS,
    FLOOR_COOKIE,
    MANY_SESSIONS,
    NO_SESSION,
    READ,
    REQUESTS,
    WRITE,
    e2e_name,
)

RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
TOTAL = re.compile(r"(\d+) requests in ")
NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
POOL = 4 * CONNECTIONS
SIDE = ("starlette", "ours-redis", "ours-cache")  # the variants of the asyncio, 2w cells
CONTENDING = ("starsessions", "ours-redis", "ours-cache")  # the variants of contention
T = TypeVar("T")
START_TIMEOUT = 120.0  # every server starts at once: on 2 busy vCPUs 30 s were too few


@dataclass
class Server:
    key: str
    loop: str
    workers: int
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self, prefix: str) -> None:
        command = [sys.executable, "-m", "benchmarks.variants", self.key, str(self.port)]
        command += [prefix, self.loop, str(self.workers)]
        self.process = subprocess.Popen(command, cwd=ROOT)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.key}: the server exited")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.key}: the server did not start within {timeout} s")

    def request(self, method: str, path: str, cookie: str | None = None) -> tuple[int, bytes, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, headers={"Cookie": cookie} if cookie else {})
            response = connection.getresponse()
            set_cookie = (response.getheader("set-cookie") or "").split(";", 1)[0]
            return response.status, response.read(), set_cookie
        finally:
            connection.close()

    def cpu_seconds(self) -> float:
        """CPU time (user and system) of the server's process and its live children."""
        assert self.process is not None
        parent, total = self.process.pid, 0.0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/stat") as file:
                    fields = file.read().rpartition(")")[2].split()
                # after the name: state, ppid, ..., utime and stime (the 12th and 13th)
                if int(entry) == parent or int(fields[1]) == parent:
                    total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def log_in(self) -> str:
        if self.key in NO_SESSION:
            return FLOOR_COOKIE
        status, _, cookie = self.request("POST", "/login")
        if status != 200 or not cookie.startswith(f"{COOKIE}="):
            raise RuntimeError(f"{self.key}: login over HTTP failed ({status})")
        return cookie


@contextlib.contextmanager
def servers(wanted: list[tuple[str, str, int]], prefix: str) -> Iterator[dict[tuple, Server]]:
    started = {spec: Server(*spec) for spec in wanted}
    try:
        for server in started.values():
            server.start(prefix)
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            if server.process is not None:
                server.process.terminate()
        for server in started.values():
            if server.process is not None:
                server.process.wait(timeout=15)


def script(path: str, requests: list[tuple[str, str, str]]) -> str:
    """A wrk script sending (method, path, cookie) in turn, one per request."""
    lines = ["local requests = {}", "local count = 0", "init = function(args)"]
    for number, (method, target, cookie) in enumerate(requests, start=1):
        headers = f'{{["Cookie"] = "{cookie}"}}' if cookie else "{}"
        lines.append(f'  requests[{number}] = wrk.format("{method}", "{target}", {headers})')
    lines += ["end", "request = function()", "  count = count + 1"]
    lines += ["  return requests[(count % #requests) + 1]", "end"]
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")
    return path


def wrk(port: int, connections: int, seconds: float, lua: str, strict: bool) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", lua]
    output = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True
    ).stdout
    rate, total = RATE.search(output), TOTAL.search(output)
    non_2xx, errors = NON_2XX.search(output), SOCKET_ERRORS.search(output)
    failed = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(n) for n in errors.groups()) if errors else 0
    )
    if rate is None or total is None or (strict and failed):
        raise RuntimeError(f"wrk on port {port}: failed requests or no figure:\n{output}")
    return {"rate": float(rate.group(1)), "requests": int(total.group(1)), "failed": failed}


@dataclass
class Cell:
    name: str
    server: Server
    lua: str
    connections: int = CONNECTIONS
    contention: str = ""  # the session's cookie, for a contention cell


def _cells(started: dict[tuple, Server], keys: list[str], directory: str) -> list[Cell]:
    cells = []

    def add(
        name: str,
        server: Server,
        requests: list[tuple[str, str, str]],
        connections: int = CONNECTIONS,
    ) -> None:
        lua = script(os.path.join(directory, f"{len(cells)}.lua"), requests)
        cells.append(Cell(name, server, lua, connections))

    for (key, loop, workers), server in started.items():
        qualifier = f"{loop}/{workers}w"
        pool = [server.log_in() for _ in range(POOL)]
        many = qualifier == E2E and key in ("starlette", "ours-redis")
        scenarios = REQUESTS if qualifier == E2E else (READ, WRITE)
        for s in scenarios:
            cookies = pool if s.logged_in else [""]
            add(e2e_name(s.key, key, qualifier), server, [(s.method, s.path, c) for c in cookies])
        if many:
            cookies = pool + [server.log_in() for _ in range(MANY_SESSIONS - POOL)]
            add(f"e2e/read-many/{key}/{qualifier}", server, [("GET", "/read", c) for c in cookies])
        if qualifier == E2E and key in ("ours-redis", "ours-cache"):
            for connections in FEW_CONNECTIONS:
                name = e2e_name(WRITE.key, key, qualifier, connections)
                add(name, server, [(WRITE.method, WRITE.path, c) for c in pool], connections)
    for key in CONTENDING:
        if key not in keys:
            continue
        server = started[(key, "uvloop", 1)]
        for level in CONTENTION_LEVELS:
            for kind in ("own", "shared"):
                slots = [str(n) for n in range(level)] if kind == "own" else ["shared"]
                lua = os.path.join(directory, f"{len(cells)}.lua")
                name = f"contention/{kind}-{level}/{key}"
                cells.append(Cell(name, server, lua, level, ",".join(slots)))
    return cells


def _contention(cell: Cell, seconds: float, results: Results) -> float:
    """A new session, every connection incrementing counters in it; its rate."""
    cookie = cell.server.log_in()
    slots = cell.contention.split(",")
    script(cell.lua, [("POST", f"/count/{slot}", cookie) for slot in slots])
    found = wrk(cell.server.port, cell.connections, seconds, cell.lua, strict=False)
    status, body, _ = cell.server.request("GET", "/counters", cookie)
    kept = sum(json.loads(body).values()) if status == 200 else 0
    facts = results.facts.setdefault(cell.name, {"requests": 0, "failed": 0, "kept": 0})
    for what, value in (("requests", found["requests"]), ("failed", found["failed"])):
        facts[what] += value
    facts["kept"] += kept
    return found["rate"]


def measure(
    results: Results,
    keys: list[str],
    prefix: str,
    rounds: int,
    seconds: float,
    contention: bool,
    main: bool,
) -> None:
    if shutil.which("wrk") is None:
        results.facts["e2e/skipped"] = "wrk is not installed (Debian: apt-get install wrk)"
        return
    wanted = [(key, "uvloop", 1) for key in keys]
    wanted += [(key, "asyncio", 1) for key in SIDE if key in keys and main]
    wanted += [(key, "uvloop", 2) for key in SIDE if key in keys and main]
    if not main:
        wanted = [(key, "uvloop", 1) for key in CONTENDING if key in keys]
    with tempfile.TemporaryDirectory() as directory, servers(wanted, prefix) as started:
        cells = [
            cell
            for cell in _cells(started, keys if contention else [], directory)
            if main or cell.contention
        ]
        for cell in cells:  # warm-up
            _rate(cell, 1.0, Results(results.metadata))
        groups = compared(cells)
        for number in range(rounds if cells else 0):
            for group in rotated(groups, number):
                _run_side_by_side(rotated(group, number), seconds, results)
            print(f"  end-to-end round {number + 1}/{rounds} done", file=sys.stderr)


def compared(cells: list[Cell]) -> list[list[Cell]]:
    """The cells whose rates are compared (`Results.ratio`), grouped: the same scenario on
    the same loop and workers, one cell a variant. A cell's name less its server's variant
    names its group (``e2e/read/ours-redis/uvloop/1w``: ``e2e/read/uvloop/1w``)."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        group = "/".join(part for part in cell.name.split("/") if part != cell.server.key)
        groups.setdefault(group, []).append(cell)
    return list(groups.values())


def rotated(items: list[T], number: int) -> list[T]:
    """`items` from its `number`-th on, round the end: each round starts one later."""
    turn = number % len(items)
    return items[turn:] + items[:turn]


def _run_side_by_side(group: list[Cell], seconds: float, results: Results) -> None:
    """One round of a group, in mirrored order (A B C C B A), each run half the round's
    time: the variants compared are measured seconds apart, and a drift of the machine's
    speed over the round (other processes, the host's neighbours) weighs on each alike.
    A cell's figure is its two runs' requests over their time together; its CPU figure,
    the server's CPU time over the requests answered in them."""
    half = max(1.0, seconds / 2)
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[tuple[float, int]]] = {}
    for cell in group + group[::-1]:
        rate, sample = _rate(cell, half, results)
        rates.setdefault(cell.name, []).append(rate)
        if sample is not None:
            cpu.setdefault(cell.name, []).append(sample)
    for cell in group:
        results.add(cell.name, [len(rates[cell.name]) / sum(rates[cell.name])])
        if cell.name in cpu:
            spent = sum(used for used, _ in cpu[cell.name])
            answered = sum(requests for _, requests in cpu[cell.name])
            results.add("e2e-cpu/" + cell.name.removeprefix("e2e/"), [spent / answered])


def _rate(cell: Cell, seconds: float, results: Results) -> tuple[float, tuple[float, int] | None]:
    """A run's rate and, but for contention (which logs in and reads the counters around
    its run), the server's CPU seconds in it and the requests it answered."""
    if cell.contention:
        return _contention(cell, seconds, results), None
    before = cell.server.cpu_seconds()
    found = wrk(cell.server.port, cell.connections, seconds, cell.lua, strict=True)
    return found["rate"], (cell.server.cpu_seconds() - before, int(found["requests"]))
