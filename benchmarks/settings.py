"""What one run measures and how hard: the modes, the Redis, the secrets, and the run's
own key prefix (deleted with SCAN MATCH and UNLINK in batches at the end; never a flush)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, replace
from typing import Any

import redis

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "benchmark-secret-key-0123456789abcdefghijklmnop"
SESSION_LIFETIME = 14 * 24 * 60 * 60


@dataclass(frozen=True)
class Mode:
    """How many times each figure is taken."""

    name: str
    repeats: int  # in-process: batches per (variant, scenario), interleaved
    iterations: int  # in-process: requests per batch
    e2e_repeats: int  # end-to-end: wrk runs per (variant, scenario), interleaved
    e2e_seconds: int  # end-to-end: duration of one wrk run
    e2e_connections: int
    scale_sizes: tuple[int, ...]  # invalidation at scale: sessions in Redis
    scale_repeats: int  # invalidation at scale: timed invalidations per method and size
    window_rounds: int  # local_cache's invalidation window: timed invalidations
    window_workers: int  # local_cache's invalidation window: worker processes with a cache
    instruction_scenarios: tuple[str, ...]  # instructions: scenarios counted
    instruction_requests: int  # instructions: requests counted per scenario


QUICK = Mode(
    name="quick",
    repeats=5,
    iterations=200,
    e2e_repeats=1,
    e2e_seconds=2,
    e2e_connections=32,
    scale_sizes=(10, 10_000),
    scale_repeats=5,
    window_rounds=30,
    window_workers=3,
    instruction_scenarios=("read",),
    instruction_requests=200,
)
FULL = Mode(
    name="full",
    repeats=15,
    iterations=600,
    e2e_repeats=3,
    e2e_seconds=5,
    e2e_connections=32,
    scale_sizes=(10, 10_000, 1_000_000),
    scale_repeats=7,
    window_rounds=200,
    window_workers=3,
    instruction_scenarios=("read", "write"),
    instruction_requests=300,
)
MODES = {mode.name: mode for mode in (QUICK, FULL)}


def with_overrides(mode: Mode, **changes: Any) -> Mode:
    """The mode with the options given on the command line (None means: keep)."""
    kept: dict[str, Any] = {k: v for k, v in changes.items() if v is not None}
    return replace(mode, **kept)


def new_prefix() -> str:
    """A key prefix of this run's own; everything under it is deleted at the end."""
    return f"smbench:{uuid.uuid4().hex[:10]}:"


DELETE_BATCH = 10_000


def delete_prefix(prefix: str, url: str = REDIS_URL) -> int:
    """UNLINK every key under `prefix`; returns how many were deleted."""
    if not prefix or "*" in prefix:
        raise ValueError("refusing to delete without a literal prefix")
    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=prefix + "*", count=DELETE_BATCH):
            batch.append(key)
            if len(batch) >= DELETE_BATCH:
                deleted += client.unlink(*batch)
                batch = []
        if batch:
            deleted += client.unlink(*batch)
    finally:
        client.close()
    return deleted
