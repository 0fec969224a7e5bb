"""End-to-end requests per second: each variant under uvicorn (one worker), wrk on loopback."""

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .scenarios import FLOOR_COOKIE, REQUESTS, Scenario
from .serve import CACHE_STATS_PATH
from .settings import Mode
from .variants import COOKIE

ROOT = Path(__file__).resolve().parent.parent
_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_TOTAL = re.compile(r"(\d+) requests in ")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_P50 = re.compile(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}
WARM_UP_SECONDS = 1


@dataclass
class EndToEnd:
    rps: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # variant -> scenario
    p50_ms: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # local_cache variants: per run, wrk's completed requests and the cache's counts over it
    cache: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    skipped: str | None = None


@dataclass
class Server:
    key: str
    port: int
    process: subprocess.Popen[bytes]
    cookies: list[str] = field(default_factory=list)  # a pool of logged-in sessions
    cached: bool = False  # serves CACHE_STATS_PATH (local_cache)


def wrk_path() -> str | None:
    return shutil.which("wrk")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(key: str, prefix: str) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.serve", key, str(port), prefix], cwd=ROOT, env=env
    )
    return Server(key, port, process, cached=key == "ours-cache")


def _wait_ready(server: Server, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.key}: the server exited with {server.process.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", server.port), 0.2),
        ):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{server.key}: the server did not start within {timeout} s")


def _request(
    server: Server, method: str, path: str, cookie: str | None
) -> tuple[int, bytes, list[str]]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, headers={"Cookie": cookie} if cookie else {})
        response = connection.getresponse()
        return response.status, response.read(), response.headers.get_all("set-cookie") or []
    finally:
        connection.close()


def _log_in(server: Server, pool: int) -> None:
    """Log `pool` sessions in over HTTP (the floor gets fake cookies of the same size)."""
    if server.key == "floor":
        server.cookies = [FLOOR_COOKIE] * pool
        return
    for _ in range(pool):
        status, _, cookies = _request(server, "POST", "/login", None)
        values = [c.split(";", 1)[0] for c in cookies if c.startswith(f"{COOKIE}=")]
        if status != 200 or not values:
            raise RuntimeError(f"{server.key}: login over HTTP failed ({status}, {cookies})")
        status, body, _ = _request(server, "GET", "/read", values[0])
        if status != 200 or not body.startswith(b"user-"):
            raise RuntimeError(f"{server.key}: logged-in read over HTTP answered {status} {body!r}")
        server.cookies.append(values[0])


def _script(server: Server, scenario: Scenario, directory: str) -> str:
    """A wrk script sending `scenario`, each request with the next cookie of the pool, so
    concurrent requests rarely share a session (as with real users)."""
    cookies = server.cookies if scenario.logged_in else [""]
    requests = []
    for cookie in cookies:
        headers = f'{{["Cookie"] = "{cookie}"}}' if cookie else "{}"
        requests.append(f'wrk.format("{scenario.method}", nil, {headers})')
    return round_robin_script(os.path.join(directory, f"{server.key}-{scenario.key}.lua"), requests)


def round_robin_script(path: str, requests: list[str]) -> str:
    """Write a wrk script at `path` that sends `requests` (wrk.format expressions) in turn,
    one per request; returns the path."""
    lines = ["local requests = {}", "local count = 0", "init = function(args)"]
    lines += [f"  requests[{n}] = {request}" for n, request in enumerate(requests, start=1)]
    lines += [
        "end",
        "request = function()",
        "  count = count + 1",
        "  return requests[(count % #requests) + 1]",
        "end",
    ]
    with open(path, "w") as script:
        script.write("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def servers(keys: list[str], prefix: str, pool: int) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for key in keys:
            started.append(_start(key, prefix))
        for server in started:
            _wait_ready(server)
            _log_in(server, pool)
        yield started
    finally:
        for server in started:
            server.process.terminate()
        for server in started:
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


def _cache_stats(server: Server) -> dict[str, Any]:
    status, body, _ = _request(server, "GET", CACHE_STATS_PATH, None)
    if status != 200:
        raise RuntimeError(f"{server.key}: cache stats answered {status}")
    stats: dict[str, Any] = json.loads(body)
    return stats


def _wrk(server: Server, scenario: Scenario, mode: Mode, script: str) -> tuple[float, float, int]:
    command = ["wrk", "-t1", f"-c{mode.e2e_connections}", f"-d{mode.e2e_seconds}s", "--latency"]
    command += ["-s", script, f"http://127.0.0.1:{server.port}{scenario.path}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps, non_2xx, errors = (
        _RPS.search(output),
        _NON_2XX.search(output),
        _SOCKET_ERRORS.search(output),
    )
    if rps is None:
        raise RuntimeError(f"{server.key} {scenario.key}: no figure in wrk's output:\n{output}")
    if non_2xx is not None or (errors is not None and any(int(n) for n in errors.groups())):
        raise RuntimeError(f"{server.key} {scenario.key}: failed requests under load:\n{output}")
    p50 = _P50.search(output)
    total = _TOTAL.search(output)
    return (
        float(rps.group(1)),
        float(p50.group(1)) * _UNIT[p50.group(2)] if p50 else float("nan"),
        int(total.group(1)) if total else 0,
    )


def _run(server: Server, scenario: Scenario, mode: Mode, script: str, result: EndToEnd) -> None:
    """One timed wrk run; for a local_cache server, what its cache counted meanwhile."""
    before = _cache_stats(server) if server.cached else None
    rps, p50, requests = _wrk(server, scenario, mode, script)
    result.rps[server.key][scenario.key].append(rps)
    result.p50_ms[server.key][scenario.key].append(p50)
    if before is not None:
        after = _cache_stats(server)
        result.cache.setdefault(server.key, {}).setdefault(scenario.key, []).append(
            {
                "requests": requests,
                "hits": after["hits"] - before["hits"],
                "entries": after["entries"],
                "healthy": after["healthy"],
                "listener_changes": after["generation"] - before["generation"],
            }
        )


def measure(mode: Mode, keys: list[str], prefix: str, log: Callable[[str], None]) -> EndToEnd:
    result = EndToEnd()
    if wrk_path() is None:
        result.skipped = "skipped: wrk is not installed (Debian: apt-get install wrk)"
        return result
    pool = 4 * mode.e2e_connections
    with tempfile.TemporaryDirectory() as directory, servers(keys, prefix, pool) as started:
        scripts = {
            (server.key, scenario.key): _script(server, scenario, directory)
            for server in started
            for scenario in REQUESTS
        }
        for server in started:
            result.rps[server.key] = {s.key: [] for s in REQUESTS}
            result.p50_ms[server.key] = {s.key: [] for s in REQUESTS}
        warm_up = replace(mode, e2e_seconds=WARM_UP_SECONDS)
        for server in started:
            for scenario in REQUESTS:
                _wrk(server, scenario, warm_up, scripts[(server.key, scenario.key)])
        log("  end-to-end warm-up done")
        for repeat in range(mode.e2e_repeats):
            order = started[repeat % len(started) :] + started[: repeat % len(started)]
            for scenario in REQUESTS:
                for server in order:
                    _run(server, scenario, mode, scripts[(server.key, scenario.key)], result)
            log(f"  end-to-end repeat {repeat + 1}/{mode.e2e_repeats} done")
    return result
