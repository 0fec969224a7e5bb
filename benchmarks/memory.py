"""Redis memory per session: MEMORY USAGE of every key one login leaves behind."""

from __future__ import annotations

import re
from dataclasses import dataclass

import redis.asyncio

from .inprocess import login_cookie
from .settings import REDIS_URL
from .variants import build

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
