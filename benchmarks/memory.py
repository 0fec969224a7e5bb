"""Redis memory per session: MEMORY USAGE of every key one login leaves behind."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import redis.asyncio

from .driver import Request
from .inprocess import login_cookie
from .settings import REDIS_URL
from .variants import build

CACHED_SESSIONS = 1000

KINDS = (
    (re.compile(r"\}:s:[0-9a-f]+$"), "session record"),
    (re.compile(r"\}:e$"), "user epoch (one per user)"),
    (re.compile(r"\}:i$"), "per-user index (one per user)"),
    (re.compile(r"starsessions:"), "session record"),
)


@dataclass(frozen=True)
class KeyUsage:
    variant: str
    kind: str
    bytes: int
    ttl_s: int


def kind_of(variant: str, key: str) -> str:
    for pattern, kind in KINDS:
        if pattern.search(key):
            if variant == "ours-sql" and kind.startswith("user epoch"):
                return "user epoch: Redis copy of the SQL row (one per user)"
            return kind
    return "other"


async def measure(variants: list[str], prefix: str) -> list[KeyUsage]:
    """Log in once with each Redis-backed variant, then size every key it wrote."""
    client = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    usages: list[KeyUsage] = []
    try:
        for key in variants:
            own = f"{prefix}mem-{key}:"
            variant = build(key, own)
            if not variant.uses_redis:
                continue
            try:
                await login_cookie(variant)
            finally:
                await variant.close()
            async for name in client.scan_iter(match=own + "*", count=1000):
                size = await client.memory_usage(name, samples=0)
                ttl = await client.ttl(name)
                usages.append(KeyUsage(key, kind_of(key, name), int(size or 0), int(ttl)))
    finally:
        await client.aclose()
    return sorted(usages, key=lambda u: (variants.index(u.variant), u.kind))


@dataclass(frozen=True)
class CacheUsage:
    """What local_cache holds in the process for `sessions` sessions of distinct users."""

    sessions: int
    entries: int
    bytes: int  # the OrderedDict, its keys and its values (sys.getsizeof)

    @property
    def per_session(self) -> float:
        return self.bytes / self.sessions


async def measure_cache(prefix: str, sessions: int = CACHED_SESSIONS) -> CacheUsage:
    """Log `sessions` sessions in with ours-cache, read each once (the read caches its record
    and its user's epoch), and size what the cache then holds."""
    variant = build("ours-cache", f"{prefix}mem-cache:")
    try:
        cookies = [await login_cookie(variant) for _ in range(sessions)]
        for cookie in cookies:
            response = await Request("GET", "/read", cookie).fetch(variant.app)
            if not response.body.startswith(b"user-"):
                raise RuntimeError(f"ours-cache: read answered {response.body!r}")
        entries = variant.cache().entries
        size = sys.getsizeof(entries) + sum(
            sys.getsizeof(key) + sys.getsizeof(value) for key, value in entries.items()
        )
        return CacheUsage(sessions, len(entries), size)
    finally:
        await variant.close()
