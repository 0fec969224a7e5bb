"""Invalidating one user among 10 to 10^6 sessions: the epoch against what the Redis
community usually suggests (SCAN MATCH + DEL; a per-user SET of session ids), a bare SET
timed beside them as the yardstick against the machine's noise of the moment.

The target user logs in for real, SESSIONS_PER_USER times; every other session is a copy
of the target's keys (record, epoch, index: the same shapes and sizes) under another user's
tag, bulk-written with pipelines, plus the per-user SETs the SET method needs.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import redis
import redis.asyncio

from session_middleware import get_session, sessions

from .common import COOKIE, REDIS_URL, SECRET, Counter, Request, counting, delete_prefix

SESSIONS_PER_USER = 5
TARGET = "target-user"
BATCH = 5_000
SCAN_COUNT = 1_000
METHODS = ("reference", "epoch", "epoch+delete", "scan", "set")


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """POST logs TARGET in; GET answers whose session this is, and why not."""
    session = get_session(scope)
    if scope["method"] == "POST":
        session.login(TARGET)
    body = f"{session.user_id}|{scope.get('session_rejected')}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


class Space:
    """One size's keys under a prefix of their own; the target's keys found by their shape:
    ``<tag>:s:<handle>`` records, ``<tag>:e`` the epoch, ``<tag>:i`` the index."""

    def __init__(self, prefix: str, client: redis.asyncio.Redis) -> None:
        self.prefix, self.client = prefix, client
        self.config = sessions(
            secret_key=SECRET, redis=client, key_prefix=prefix, session_cookie=COOKIE
        )
        self.app = self.config(_app)
        self.record_base = self.index = self.epoch = ""
        self.elapsed, self.round_trips = 0.0, 0

    async def log_in(self) -> list[str]:
        cookies = []
        for _ in range(SESSIONS_PER_USER):
            cookie = (await Request("POST", "/").fetch(self.app)).cookie()
            assert cookie is not None, "login failed"
            cookies.append(cookie)
        return cookies

    async def find_target(self) -> None:
        """The target's keys, found by their shape before the fill (a small keyspace)."""
        async for key in self.client.scan_iter(match=self.prefix + "*", count=SCAN_COUNT):
            key = key.decode()
            if ":s:" in key:
                self.record_base = key[: key.index(":s:") + 3]
            elif key.endswith(":i"):
                self.index = key
            elif key.endswith(":e"):
                self.epoch = key

    async def target_records(self) -> list[str]:
        handles = await self.client.zrange(self.index, 0, -1)
        return [self.record_base + handle.decode() for handle in handles]


def fill(space: Space, size: int, record: dict[bytes, bytes], epoch: bytes) -> None:
    """Bulk-write size - SESSIONS_PER_USER more sessions, SESSIONS_PER_USER per user: each
    user's keys a copy of the target's under a hash tag of its own, and a SET of its ids."""
    client = redis.Redis.from_url(REDIS_URL)
    tag = space.index[space.index.index("{") : space.index.index("}") + 1]
    ttl = 14 * 24 * 3600 * 1000
    fields = [part for pair in record.items() for part in pair]

    def commands() -> Iterator[tuple[Any, ...]]:
        for _ in range((size - SESSIONS_PER_USER) // SESSIONS_PER_USER):
            own = "{bg" + uuid.uuid4().hex[:12] + "}"
            handles = [uuid.uuid4().hex for _ in range(SESSIONS_PER_USER)]
            for handle in handles:
                key = space.record_base.replace(tag, own) + handle
                yield ("HSET", key, *fields)
                yield ("PEXPIRE", key, ttl)
            yield ("SET", space.epoch.replace(tag, own), epoch, "PX", ttl)
            index = [part for h in handles for part in (time.time() * 1000 + ttl, h)]
            yield ("ZADD", space.index.replace(tag, own), *index)
            yield ("SADD", f"{space.prefix}set:{own}", *handles)

    pipe: Any = client.pipeline(transaction=False)
    for number, command in enumerate(commands(), start=1):
        pipe.execute_command(*command)
        if number % BATCH == 0:
            pipe.execute()
    pipe.execute()
    client.close()


async def _timed(space: Space, method: str) -> int:
    """One invalidation of the target by `method`; the records it deleted."""
    client, records = space.client, await space.target_records()
    set_key = f"{space.prefix}set:target"
    if method == "set":
        await client.sadd(set_key, *records)
    counter = Counter()
    with counting(counter):
        start = time.perf_counter()
        deleted = 0
        if method == "epoch":
            await space.config.ainvalidate_user(TARGET)
        elif method == "epoch+delete":
            await space.config.ainvalidate_user(TARGET, delete=True)
        elif method == "scan":
            pattern = space.record_base + "*"
            found = [key async for key in client.scan_iter(match=pattern, count=SCAN_COUNT)]
            deleted = await client.delete(*found)
        elif method == "set":
            deleted = await client.delete(*await client.smembers(set_key), set_key) - 1
        else:
            await client.set(f"{space.prefix}reference", "x", px=60_000)
        space.elapsed, space.round_trips = time.perf_counter() - start, counter.round_trips
    return int(deleted)


async def measure(results: Any, prefix: str, sizes: list[int], repeats: int) -> None:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        for size in sizes:
            space = Space(f"{prefix}scale{size}:", client)
            try:
                await space.log_in()
                await space.find_target()
                record = await client.hgetall((await space.target_records())[0])
                started = time.perf_counter()
                fill(space, size, record, await client.get(space.epoch))
                facts: dict[str, Any] = {"fill_seconds": time.perf_counter() - started}
                for repeat in range(repeats):
                    for method in METHODS:
                        cookies = await space.log_in()
                        deleted = await _timed(space, method)
                        results.add(f"scale/{method}/{size}", [space.elapsed])
                        facts[f"{method}/round_trips"] = space.round_trips
                        facts[f"{method}/deleted"] = deleted
                        if method == "epoch" and repeat == 0:
                            whose = [
                                (await Request("GET", "/", c).fetch(space.app)).body
                                for c in cookies
                            ]
                            facts["rejected_after_epoch"] = all(w == b"None|epoch" for w in whose)
                results.facts[f"scale/{size}"] = facts
            finally:
                deleted = delete_prefix(space.prefix)
                print(f"  {size}: timed; deleted {deleted} keys", file=sys.stderr, flush=True)
    finally:
        await client.aclose()
