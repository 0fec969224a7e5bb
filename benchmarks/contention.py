"""Concurrent writes to ONE session (issue 11): every wrk connection writes a counter in
the same logged-in session, at 1, 2, 4, 8 and 32 connections, under uvicorn.

Two workloads per level: *shared* (every request increments the same key) and *own key*
(request n increments key n mod C, C the connections: with wrk's one thread handing out
requests in turn, concurrent requests write different keys, as if each connection had a
key of its own). Each run starts on a session just logged in; afterwards the counters are
read back, so the report says how many of the answered increments the session kept.
Non-2xx answers and socket errors are counted, not fatal: they are part of the result.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .endtoend import WARM_UP_SECONDS, Server, _request, round_robin_script, servers, wrk_path
from .settings import Mode
from .variants import COOKIE

LEVELS = (1, 2, 4, 8, 32)
KINDS = {"shared": "one shared key", "own": "a key per connection"}
VARIANTS = ("starsessions", "ours-redis")  # issue 11: ours against starsessions
_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_TOTAL = re.compile(r"(\d+) requests in ")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass
class Run:
    rps: float
    requests: int  # answered by the server, as wrk counts them
    non_2xx: int
    socket_errors: int
    kept: int  # the sum of the session's counters afterwards


@dataclass
class Contention:
    levels: list[int] = field(default_factory=lambda: list(LEVELS))
    # variant -> kind -> str(level) -> runs
    runs: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = field(default_factory=dict)
    seconds: int = 0
    skipped: str | None = None


def _log_in(server: Server) -> str:
    status, _, cookies = _request(server, "POST", "/login", None)
    values = [c.split(";", 1)[0] for c in cookies if c.startswith(f"{COOKIE}=")]
    if status != 200 or not values:
        raise RuntimeError(f"{server.key}: login over HTTP failed ({status}, {cookies})")
    return values[0]


def _counters(server: Server, cookie: str) -> int:
    status, body, _ = _request(server, "GET", "/counters", cookie)
    if status != 200:
        raise RuntimeError(f"{server.key}: /counters answered {status} {body!r}")
    return sum(int(value) for value in json.loads(body).values())


def _script(cookie: str, kind: str, connections: int, directory: str, name: str) -> str:
    """A wrk script: POST /count/<slot> with the one session's cookie; the slot is
    'shared', or the request's number mod `connections`."""
    slots = ["shared"] if kind == "shared" else [str(n) for n in range(connections)]
    requests = [
        f'wrk.format("POST", "/count/{slot}", {{["Cookie"] = "{cookie}"}})' for slot in slots
    ]
    return round_robin_script(os.path.join(directory, f"{name}.lua"), requests)


def _wrk(
    server: Server, connections: int, seconds: int, script: str
) -> tuple[float, int, int, int]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script]
    command.append(f"http://127.0.0.1:{server.port}/")
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps, total = _RPS.search(output), _TOTAL.search(output)
    if rps is None or total is None:
        raise RuntimeError(f"{server.key}: no figure in wrk's output:\n{output}")
    non_2xx = _NON_2XX.search(output)
    errors = _SOCKET_ERRORS.search(output)
    return (
        float(rps.group(1)),
        int(total.group(1)),
        int(non_2xx.group(1)) if non_2xx else 0,
        sum(int(n) for n in errors.groups()) if errors else 0,
    )


def _run(server: Server, kind: str, level: int, seconds: int, directory: str) -> Run:
    cookie = _log_in(server)
    script = _script(cookie, kind, level, directory, f"{server.key}-{kind}-{level}")
    rps, requests, non_2xx, socket_errors = _wrk(server, level, seconds, script)
    return Run(rps, requests, non_2xx, socket_errors, _counters(server, cookie))


def measure(mode: Mode, variants: list[str], prefix: str, log: Callable[[str], None]) -> Contention:
    result = Contention(seconds=mode.e2e_seconds)
    if wrk_path() is None:
        result.skipped = "skipped: wrk is not installed (Debian: apt-get install wrk)"
        return result
    keys = [key for key in VARIANTS if key in variants]
    with tempfile.TemporaryDirectory() as directory, servers(keys, prefix, 1) as started:
        for server in started:
            result.runs[server.key] = {kind: {str(c): [] for c in LEVELS} for kind in KINDS}
            for kind in KINDS:
                _run(server, kind, 8, WARM_UP_SECONDS, directory)
        log("  contention warm-up done")
        for repeat in range(mode.e2e_repeats):
            order = started[repeat % len(started) :] + started[: repeat % len(started)]
            for level in LEVELS:
                for kind in KINDS:
                    for server in order:
                        run = _run(server, kind, level, mode.e2e_seconds, directory)
                        result.runs[server.key][kind][str(level)].append(run.__dict__)
                        log(
                            f"  {server.key} {kind} c{level}: {run.rps:.0f} req/s, "
                            f"{run.non_2xx} non-2xx, {run.socket_errors} socket errors, "
                            f"kept {run.kept}/{run.requests}"
                        )
            log(f"  contention repeat {repeat + 1}/{mode.e2e_repeats} done")
    return result
