"""Every lifetime and TTL: when a record expires, when a read refreshes it, how long an
epoch and an index outlive the sessions stamped with them."""

from __future__ import annotations

from dataclasses import dataclass

from .._records import Record
from .._redis.lua_scripts import EPOCH_TTL_MARGIN_MS


@dataclass(frozen=True, slots=True)
class Timing:
    """Lifetimes, in seconds."""

    lifetime: int
    idle_timeout: int | None
    refresh_interval: float

    def record_ttl(self, record: Record, now: float) -> float:
        """Seconds until the record expires, as of a write at `now`."""
        left = record.expires - now
        return left if self.idle_timeout is None else min(left, self.idle_timeout)

    def expired(self, record: Record, now: float) -> bool:
        if now >= record.expires:
            return True
        return self.idle_timeout is not None and now - record.refreshed >= self.idle_timeout

    def refresh_due(self, record: Record, now: float) -> bool:
        """Whether a read writes the record back to record activity."""
        return now - record.refreshed >= self.refresh_interval

    @property
    def epoch_ttl_ms(self) -> int:
        """Epochs (and indexes) outlive every session stamped since they were last set."""
        return self.lifetime * 1000 + EPOCH_TTL_MARGIN_MS


def ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)
