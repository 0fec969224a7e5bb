"""What a logged-in read costs as the session grows, and when it misses the decoded-record
memo: CPU instructions per request under callgrind, as in `instructions.py`.

Scenarios (session_middleware, Redis epochs, the multiplexed connection, max_session_bytes
raised to 256 KB): one session of
1 key, 10 keys, 100 keys, 10 KB and 100 KB (10 keys of lists of small objects) read again
and again, as the suite's read does; and `many`: MANY sessions of 1 key, more than the memo
holds (512), read in turn, so that every read decodes its record. Each scenario runs in a
process of its own under callgrind twice, with its set-up alone and with `requests` reads
more; the difference over the reads is the figure. The read is the suite's /read route
(it reads one key, ``theme``).

``python -m benchmarks.session_sizes [READS]`` prints the figures (200 reads each; its keys
are under a prefix of its own, deleted afterwards);
``python -m benchmarks.session_sizes SCENARIO REQUESTS PREFIX`` is the process that runs
under callgrind.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import redis
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from session_middleware import get_session, sessions

from .app import THEME, build_app
from .driver import Request
from .inprocess import login_cookie
from .instructions import _COLLECTED, _ENVIRONMENT, CALLGRIND, PARALLEL
from .settings import REDIS_URL, SECRET, SESSION_LIFETIME
from .variants import COOKIE, OurAccess, Variant

SIZES: dict[str, tuple[int, int]] = {  # scenario -> (keys, bytes of JSON, 0: tiny values)
    "1 key": (1, 0),
    "10 keys": (10, 0),
    "100 keys": (100, 0),
    "10 KB": (10, 10_000),
    "100 KB": (10, 100_000),
}
MANY = "many sessions"
SESSIONS = 600  # more than the decoded-record memo holds (512)
MAX_SESSION_BYTES = 256 * 1024  # room for the 100 KB session (the default is 64 KB)


def value_of(size: int) -> object:
    """About `size` bytes of JSON: a list of small objects, as a cart or a form would hold."""
    item = 0
    items: list[dict[str, object]] = []
    while size > 0:
        items.append({"id": item, "name": f"item {item}", "qty": 2, "price": 9.5})
        size -= 50
        item += 1
    return items


async def fill(request: StarletteRequest) -> PlainTextResponse:
    """The session becomes ``theme`` and keys-1 more keys holding `size` bytes in all."""
    keys, size = int(request.path_params["keys"]), int(request.path_params["size"])
    session = get_session(request)
    session.pop("cart", None)
    for number in range(1, keys):
        session[f"k{number}"] = value_of(size // keys) if size else number
    return PlainTextResponse("ok")


async def _run(scenario: str, requests: int, prefix: str) -> None:
    config = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=prefix,
        session_cookie=COOKIE,
        max_age=SESSION_LIFETIME,
        max_session_bytes=MAX_SESSION_BYTES,
    )
    variant = Variant("ours-redis", config(build_app(OurAccess())), True)
    filler = config(Starlette(routes=[Route("/fill/{keys}/{size}", fill)]))
    keys, size = SIZES.get(scenario, (1, 0))
    cookies = [await login_cookie(variant) for _ in range(SESSIONS if scenario == MANY else 1)]
    for cookie in cookies:
        if (await Request("GET", f"/fill/{keys}/{size}", cookie).fetch(filler)).status != 200:
            raise RuntimeError("filling the session failed")
        response = await Request("GET", "/read", cookie).fetch(variant.app)
        if not response.body.endswith(f":{THEME}".encode()):
            raise RuntimeError(f"a read answered {response.body!r}")
    reads = [partial(Request("GET", "/read", cookie).send, variant.app) for cookie in cookies]
    for number in range(requests):
        await reads[number % len(reads)]()
    await config.redis.aclose()


def _collected(scenario: str, requests: int, prefix: str) -> int:
    command = [*CALLGRIND, sys.executable, "-m", "benchmarks.session_sizes"]
    command += [scenario, str(requests), prefix]
    done = subprocess.run(command, capture_output=True, text=True, env=_ENVIRONMENT, check=False)
    match = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"{scenario} under callgrind failed:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def measure(requests: int, prefix: str, log: Callable[[str], None]) -> dict[str, float]:
    """Instructions per read, by scenario."""
    scenarios = [*SIZES, MANY]

    def count(scenario: str) -> float:
        own = f"{prefix}sizes:{scenarios.index(scenario)}:"
        total = _collected(scenario, requests, own) - _collected(scenario, 0, own)
        log(f"  {scenario}: {round(total / requests):,} instructions per read")
        return round(total / requests)

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return dict(zip(scenarios, pool.map(count, scenarios), strict=True))


def main(reads: int) -> None:
    prefix = f"smbench:{uuid.uuid4().hex[:8]}:"
    try:
        found = measure(reads, prefix, lambda line: print(line, flush=True))
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start : start + 500])
        client.close()
    base = found["1 key"]
    for scenario, count in found.items():
        print(f"{scenario}: {count:,} instructions per read, {count / base:.2f}x the 1-key read")


if __name__ == "__main__":
    if len(sys.argv) == 4:
        asyncio.run(_run(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
