"""Many workers under load: tests/load_app.py in three uvicorn processes on their own
ports, as behind a load balancer, on a throwaway Redis, driven by concurrent clients on
loopback while users are invalidated, Redis is killed and restarted, and Redis hangs.

Every device is one client with its own cookie and its own worker (the two devices of a
user are on different workers), sending one request at a time, so what it must see is
exact: its user, and a counter that moves by one per successful /hit.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from session_middleware import _fail_closed as unavailable
from session_middleware import sessions

from .support import SECRET, new_prefix
from .support.redis_servers import HOST, RedisServer, Servers, free_port, spawn, wait_until

WORKERS = 3
REDIS_TIMEOUT = 0.5
USERS = 8
DEVICES_PER_USER = 2
CLIENT_TIMEOUT = 5.0
# A request while Redis hangs waits for one socket timeout (and, when every connection
# is stuck, as long again for a free one): far below this, far below the client's.
HUNG_REQUEST_BOUND = 2.5
RECOVERY_DEADLINE = 10.0
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.anyio


@dataclass
class Store:
    group: Servers
    redis: RedisServer
    prefix: str


@dataclass
class Server:
    urls: list[str]  # one per worker process

    def url_for(self, device: int) -> str:
        return self.urls[device % len(self.urls)]


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    group = Servers("load")
    # Written to the AOF before any reply, so a kill -9 loses nothing acknowledged.
    server = group.add("redis", ["--appendonly", "yes", "--appendfsync", "no"])
    try:
        server.start()
        yield Store(group, server, new_prefix())
    finally:
        group.stop()


@pytest.fixture(scope="module")
def server(store: Store) -> Iterator[Server]:
    env = {
        **os.environ,
        "SM_REDIS_URL": store.redis.url,
        "SM_KEY_PREFIX": store.prefix,
        "SM_SECRET": SECRET,
        "SM_REDIS_TIMEOUT": str(REDIS_TIMEOUT),
    }
    workers: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    try:
        for number in range(WORKERS):
            port = free_port()
            command = [
                *(
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "tests.support.load_app:create_app",
                    "--factory",
                ),
                *("--host", HOST, "--port", str(port), "--log-level", "warning"),
                *("--no-access-log", "--timeout-graceful-shutdown", "2"),
            ]
            log = store.group.root / f"uvicorn-{number}.log"
            process = spawn(command, log, cwd=ROOT, env=env)
            workers.append((f"http://{HOST}:{port}", process, log))
        pids = set()
        for url, process, log in workers:
            wait_until(partial(_answers, url, process, log, pids), 30.0, f"{url} to serve")
        assert len(pids) == WORKERS
        yield Server([url for url, _, _ in workers])
    finally:
        for _, process, _ in workers:
            process.terminate()
        for _, process, _ in workers:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(url: str, process: subprocess.Popen[bytes], log: Path, pids: set[int]) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"uvicorn exited:\n{log.read_text(errors='replace')[-3000:]}")
    try:
        pids.add(httpx.get(url + "/me", timeout=1.0).json()["worker"])
    except httpx.HTTPError:
        return False
    return True


# -- the devices ---------------------------------------------------------------------


@dataclass
class Seen:
    """One request: when it started and ended (monotonic), and what it got."""

    device: int
    path: str
    started: float
    ended: float
    status: int
    body: Any
    set_cookie: bool


@dataclass
class Device:
    """One browser: a cookie, one request at a time, and the counter it must see.

    After a /hit whose answer was lost (503), the write may still have been applied, so
    the counter is known only as a range until the next answer.
    """

    number: int
    user: str
    base: str  # the worker this device's requests go to
    cookie: str = ""
    low: int = 0
    high: int = 0
    seen: list[Seen] = field(default_factory=list)

    async def send(self, http: httpx.AsyncClient, method: str, path: str) -> Seen:
        started = time.monotonic()
        url = self.base + path
        response = await http.request(method, url, headers={"cookie": self.cookie})
        ended = time.monotonic()
        body: Any = response.content
        if response.headers.get("content-type", "").startswith("application/json"):
            body = response.json()
        cookie = "set-cookie" in response.headers
        seen = Seen(self.number, path, started, ended, response.status_code, body, cookie)
        self.seen.append(seen)
        return seen

    async def login(self, http: httpx.AsyncClient) -> None:
        response = await http.post(f"{self.base}/login?user={self.user}")
        assert response.status_code == 200, response.text
        self.cookie = response.headers["set-cookie"].split(";", 1)[0]

    def check(self, seen: Seen, logged_in: bool) -> None:
        """A 200 shows this device's user and counter (or anonymous, once rejected); a
        503 is the defined one and leaves the cookie alone; nothing else comes back."""
        if seen.status == 503:
            assert seen.body == unavailable.BODY and not seen.set_cookie
            if seen.path == "/hit":
                self.high += 1
            return
        assert seen.status == 200, (seen.status, seen.body)
        if not logged_in:
            assert seen.body["user"] is None, seen
            return
        assert seen.body["user"] == self.user, seen
        step = 1 if seen.path == "/hit" else 0
        assert self.low + step <= seen.body["count"] <= self.high + step, (seen, self)
        self.low = self.high = seen.body["count"]


async def _devices(http: httpx.AsyncClient, server: Server, tag: str) -> list[Device]:
    devices = [
        Device(number, f"{tag}-{number // DEVICES_PER_USER}", server.url_for(number))
        for number in range(USERS * DEVICES_PER_USER)
    ]
    await asyncio.gather(*(device.login(http) for device in devices))
    return devices


async def _drive(
    devices: list[Device],
    http: httpx.AsyncClient,
    until: Callable[[Device], bool],
    check: Callable[[Device, Seen], None],
) -> None:
    """Every device sends requests back to back (every fourth a /hit) until `until`."""

    async def run(device: Device) -> None:
        n = device.number
        while not until(device):
            n += 1
            path = "/hit" if n % 4 == 0 else "/me"
            seen = await device.send(http, "POST" if path == "/hit" else "GET", path)
            check(device, seen)

    await asyncio.gather(*(run(device) for device in devices))


class _KeepNoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def _client() -> httpx.AsyncClient:
    """One HTTP client shared by the devices; each sends its own cookie, so the client
    keeps none of the cookies it is sent."""
    limits = httpx.Limits(max_connections=USERS * DEVICES_PER_USER + 4)
    client = httpx.AsyncClient(timeout=CLIENT_TIMEOUT, limits=limits)
    client.cookies.jar.set_policy(_KeepNoCookies())
    return client


async def _at(delay: float, action: Callable[[], Awaitable[None] | None]) -> None:
    await asyncio.sleep(delay)
    result = action()
    if result is not None:
        await result


# -- the tests -------------------------------------------------------------------------


async def test_invalidations_under_load_are_exact(store: Store, server: Server) -> None:
    admin = sessions(secret_key=SECRET, redis_url=store.redis.url, key_prefix=store.prefix)
    # user -> [when its sessions were ended: the call began, the call returned]
    ended: dict[str, list[float]] = {}
    victims = [f"inv-{n}" for n in (1, 4, 6)]
    leaver = "inv-2"  # logs out their other devices from a third one, mid-run
    connections: list[int] = []

    def check(device: Device, seen: Seen) -> None:
        window = ended.get(device.user)
        if window is None or seen.ended < window[0]:
            device.check(seen, True)
        elif len(window) == 2 and seen.started > window[1]:
            if seen.status == 200 and seen.body["user"] is not None:
                raise AssertionError(f"served a session after it was ended: {seen}")
            device.check(seen, False)
        else:  # the request overlapped the call: either answer is right
            logged_in = seen.status == 200 and seen.body["user"] is not None
            device.check(seen, logged_in)

    async def invalidate(user: str) -> None:
        ended[user] = [time.monotonic()]
        await admin.ainvalidate_user(user)
        ended[user].append(time.monotonic())

    async def logout_others(device: Device) -> None:
        ended[device.user] = [time.monotonic()]
        seen = await device.send(http, "POST", "/logout_others")
        assert seen.status == 200 and seen.body["user"] == device.user, seen
        ended[device.user].append(seen.ended)

    async def sample_connections() -> None:
        with store.redis.client(decode_responses=True) as probe:
            while time.monotonic() < stop_at:
                connections.append(int(probe.info("clients")["connected_clients"]))
                await asyncio.sleep(0.2)

    async with _client() as http:
        devices = await _devices(http, server, "inv")
        third = Device(-1, leaver, server.urls[0])  # the leaver's devices are on 1 and 2
        await third.login(http)
        stop_at = time.monotonic() + 5.0
        await asyncio.gather(
            _drive(devices, http, lambda d: _finished(d, stop_at, ended), check),
            _at(1.0, lambda: invalidate(victims[0])),
            _at(2.0, lambda: invalidate(victims[1])),
            _at(2.5, lambda: logout_others(third)),
            _at(3.0, lambda: invalidate(victims[2])),
            sample_connections(),
        )
    admin.redis.close()
    await admin.redis.aclose()

    seen = [s for device in devices for s in device.seen]
    assert len(seen) > 300, len(seen)  # a real load, not a trickle
    assert [s for s in seen if s.status != 200] == []  # Redis was up all along
    assert len({s.body["worker"] for s in seen if s.path == "/me"}) == WORKERS
    for user, (_, returned) in ended.items():
        after = [s for d in devices if d.user == user for s in d.seen if s.started > returned]
        assert after and all(s.body["user"] is None for s in after), (user, after)
    survivors = [d for d in devices if d.user not in ended]
    assert all(d.seen[-1].body["user"] == d.user for d in survivors), survivors
    assert sum(d.high for d in survivors) > 0  # their writes were kept, counted exactly
    # Each worker's pool holds at most one connection per request it has in flight.
    assert max(connections) <= len(devices) + 4, connections
    span = max(s.ended for s in seen) - min(s.started for s in seen)
    print(
        f"\nload: {len(seen)} requests in {span:.1f} s from {len(devices)} devices, "
        f"{WORKERS} workers; at most {max(connections)} Redis connections"
    )


async def test_redis_killed_and_restarted_under_load(store: Store, server: Server) -> None:
    down: dict[str, float] = {}

    def kill() -> None:
        store.redis.kill()
        down["at"] = time.monotonic()

    def restart() -> None:
        down["until"] = time.monotonic()
        store.redis.start()
        down["up"] = time.monotonic()

    async with _client() as http:
        devices = await _devices(http, server, "restart")
        await asyncio.gather(
            _drive(devices, http, lambda d: _recovered(d, down), _check_logged_in),
            _at(1.0, kill),
            _at(2.5, restart),
        )
    seen = [s for device in devices for s in device.seen]
    during = [s for s in seen if down["at"] < s.started and s.ended < down["until"]]
    assert during and all(s.status == 503 for s in during)
    # Connections left over from before the kill are replaced without a 503.
    assert all(s.status == 200 for s in seen if s.started > down["up"])
    _report_recovery("restart", devices, down["up"])
    print(f"restart: {len(during)} requests answered 503 while Redis was down")


async def test_redis_hung_under_load(store: Store, server: Server) -> None:
    hung: dict[str, float] = {}

    def pause() -> None:
        store.redis.pause()
        hung["at"] = time.monotonic()

    def resume() -> None:
        hung["until"] = time.monotonic()
        store.redis.resume()
        hung["up"] = time.monotonic()

    async with _client() as http:
        devices = await _devices(http, server, "hung")
        try:
            await asyncio.gather(
                _drive(devices, http, lambda d: _recovered(d, hung), _check_logged_in),
                _at(1.0, pause),
                _at(3.0, resume),
            )
        finally:
            if store.redis.paused:
                store.redis.resume()
    seen = [s for device in devices for s in device.seen]
    during = [s for s in seen if hung["at"] < s.started and s.ended < hung["until"]]
    assert during and all(s.status == 503 for s in during)
    assert all(s.status == 200 for s in seen if s.started > hung["up"])
    slowest = max(s.ended - s.started for s in seen)
    assert slowest < HUNG_REQUEST_BOUND, slowest  # every worker answered; none hung
    _report_recovery("hang", devices, hung["up"])
    print(f"hang: {len(during)} requests answered 503 meanwhile, the slowest in {slowest:.2f} s")


def _finished(device: Device, stop_at: float, ended: dict[str, list[float]]) -> bool:
    """Done after `stop_at` and, if this device's sessions were ended, once it has sent a
    request that began after the call ending them returned (however slow the machine)."""
    now = time.monotonic()
    if now <= stop_at:
        return False
    window = ended.get(device.user)
    if window is None:
        return True
    assert now < stop_at + RECOVERY_DEADLINE, f"{device.user}: the call ending it never returned"
    return len(window) == 2 and any(s.started > window[1] for s in device.seen)


def _check_logged_in(device: Device, seen: Seen) -> None:
    device.check(seen, True)


def _recovered(device: Device, outage: dict[str, float]) -> bool:
    """Done once, after Redis came back, this device was served as its user again."""
    up = outage.get("up")
    if up is None:
        return False
    assert time.monotonic() < up + RECOVERY_DEADLINE, "no recovery after Redis came back"
    return any(s.started > up and s.status == 200 for s in device.seen)


def _report_recovery(what: str, devices: list[Device], up: float) -> None:
    first = [min(s.ended for s in d.seen if s.started > up and s.status == 200) for d in devices]
    print(f"\n{what}: every device served again {max(first) - up:.2f} s after Redis returned")
