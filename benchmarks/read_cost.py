"""The logged-in read two ways, on the multiplexed connection: one EVALSHA of the READ script
(what the middleware sends) against MULTI, HGETALL, GET, EXEC (atomic too, with no Lua).

Both read a record HASH as the middleware writes it and its epoch key, on a redis-server of
this run's own (a free loopback port, no persistence), so that INFO commandstats holds
nothing else. Reported per read: Redis's CPU, the sum of `usec` over the top-level commands
(commandstats also counts the commands a script runs, and a script's own `usec` already
includes them), and the client's CPU instructions under callgrind (the run with `reads`
reads minus the run with none).

``python -m benchmarks.read_cost [READS]`` prints the figures;
``python -m benchmarks.read_cost --count WAY READS PORT`` is the process run under callgrind.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from typing import Any

import redis
import redis.asyncio

from session_middleware._protocol import lua_scripts as scripts
from session_middleware._transport.multiplexed import MultiplexedRedis

from .endtoend import free_port
from .inprocess import EPOCH, RECORD_FIELDS
from .instructions import _COLLECTED, _ENVIRONMENT, CALLGRIND

RECORD_KEY, EPOCH_KEY = "{u}:s:record", "{u}:e"
WAYS: dict[str, list[tuple[Any, ...]]] = {
    "READ script": [("EVAL", scripts.READ, 2, RECORD_KEY, EPOCH_KEY)],
    "MULTI HGETALL GET EXEC": [
        ("MULTI",),
        ("HGETALL", RECORD_KEY),
        ("GET", EPOCH_KEY),
        ("EXEC",),
    ],
}
TOP_LEVEL = {"READ script": ["evalsha", "eval"], "MULTI HGETALL GET EXEC": ["multi", "exec"]}
INNER = {"MULTI HGETALL GET EXEC": ["hgetall", "get"]}  # top-level inside MULTI


def client_of(port: int) -> MultiplexedRedis:
    pool = redis.asyncio.ConnectionPool(host="127.0.0.1", port=port)
    return MultiplexedRedis(pool.make_connection, timeout=5.0)


async def _reads(way: str, reads: int, port: int) -> None:
    client = client_of(port)
    commands = WAYS[way]
    await client.run(commands)  # loads the script, connects
    for _ in range(reads):
        await client.run(commands)
    await client.aclose()


def _instructions(way: str, reads: int, port: int) -> int:
    command = [*CALLGRIND, sys.executable, "-m", "benchmarks.read_cost", "--count"]
    done = subprocess.run(
        [*command, way, str(reads), str(port)],
        capture_output=True,
        text=True,
        env=_ENVIRONMENT,
        check=False,
    )
    match = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"{way} under callgrind failed:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def _redis_usec(admin: redis.Redis, way: str, reads: int, port: int) -> float:
    admin.config_resetstat()
    asyncio.run(_reads(way, reads, port))
    stats: dict[str, Any] = admin.info("commandstats")
    names = TOP_LEVEL[way] + INNER.get(way, [])
    return sum(float(stats.get(f"cmdstat_{name}", {}).get("usec", 0)) for name in names) / (
        reads + 1
    )


def main(reads: int) -> None:
    port = free_port()
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(["redis-server", *options], stdout=subprocess.DEVNULL)
    try:
        admin = redis.Redis(port=port)
        for _ in range(100):
            try:
                admin.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        admin.hset(RECORD_KEY, mapping=RECORD_FIELDS)
        admin.set(EPOCH_KEY, EPOCH)
        for way in WAYS:
            usec = [_redis_usec(admin, way, reads, port) for _ in range(3)]
            line = f"{way}: Redis CPU {sorted(usec)[1]:.2f} µs per read (median of 3)"
            if shutil.which("valgrind") is not None:
                count = _instructions(way, reads, port) - _instructions(way, 0, port)
                line += f", client {count / reads:,.0f} instructions per read"
            print(line, flush=True)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--count"]:
        asyncio.run(_reads(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
