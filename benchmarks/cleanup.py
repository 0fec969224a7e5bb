"""Deleting this run's keys: SCAN MATCH under our prefix, UNLINK in batches. Never a flush."""

from __future__ import annotations

import redis

from .settings import REDIS_URL

BATCH = 10_000


def delete_prefix(prefix: str, url: str = REDIS_URL) -> int:
    """UNLINK every key under `prefix`; returns how many were deleted."""
    if not prefix or "*" in prefix:
        raise ValueError("refusing to delete without a literal prefix")
    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=prefix + "*", count=BATCH):
            batch.append(key)
            if len(batch) >= BATCH:
                deleted += client.unlink(*batch)
                batch = []
        if batch:
            deleted += client.unlink(*batch)
    finally:
        client.close()
    return deleted
