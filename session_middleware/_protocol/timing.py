"""Every lifetime, TTL and expiry: how long a session lives, when a read refreshes it, how
its Redis key expires, how long an epoch, an index and a cached epoch outlive the
sessions stamped with them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ..errors import ConfigurationError
from .records import Record

logger = logging.getLogger("session_middleware")

DEFAULT_MAX_AGE = 14 * 24 * 60 * 60
DEFAULT_REFRESH_INTERVAL = 300
# Epochs (and indexes) live this much longer than the sessions stamped with them; the
# scripts extend an epoch's TTL only once it has fallen more than this short.
EPOCH_TTL_MARGIN_MS = 60_000


@dataclass(frozen=True, slots=True)
class Timing:
    """Lifetimes, in seconds."""

    lifetime: int
    idle_timeout: int | None
    refresh_interval: float

    @classmethod
    def from_settings(
        cls,
        max_age: int | timedelta | None,
        idle_timeout: int | timedelta | None,
        refresh_interval: float | timedelta | None,
    ) -> Timing:
        """The timing that sessions(max_age=, idle_timeout=, refresh_interval=) ask for."""
        max_age, idle_timeout = _seconds(max_age, "max_age"), _seconds(idle_timeout, "idle_timeout")
        if isinstance(refresh_interval, timedelta):
            refresh_interval = refresh_interval.total_seconds()
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int)):
            raise ConfigurationError("max_age must be a whole number of seconds, or None")
        if max_age is not None and max_age <= 0:
            logger.warning("max_age=%d: every session expires as soon as it is stored", max_age)
        if idle_timeout is not None and idle_timeout <= 0:
            raise ConfigurationError("idle_timeout must be a positive number of seconds, or None")
        if refresh_interval is None:
            refresh_interval = DEFAULT_REFRESH_INTERVAL
            if idle_timeout is not None:
                refresh_interval = min(refresh_interval, idle_timeout / 10)
        if refresh_interval <= 0 or (idle_timeout is not None and refresh_interval >= idle_timeout):
            raise ConfigurationError(
                "refresh_interval must be positive and shorter than idle_timeout"
            )
        lifetime = DEFAULT_MAX_AGE if max_age is None else max_age
        return cls(lifetime, idle_timeout, refresh_interval)

    def idle_within(self, seconds: int) -> Timing:
        """These lifetimes, with a session also ending `seconds` after it was last seen (a
        framework's own lifetime, as Flask's ``PERMANENT_SESSION_LIFETIME``), and seen
        again (refreshed) at least ten times within that."""
        seconds = max(1, seconds)
        if seconds >= self.lifetime or (
            self.idle_timeout is not None and self.idle_timeout <= seconds
        ):
            return self
        return replace(
            self, idle_timeout=seconds, refresh_interval=min(self.refresh_interval, seconds / 10)
        )

    # -- a session record ------------------------------------------------------------------

    def new_expiry(self, now: float) -> float:
        """When a session stored at `now` ends at the latest, used or not."""
        return now + self.lifetime

    def ends_at(self, record: Record) -> float:
        """When the session ends if it is not used again."""
        if self.idle_timeout is None:
            return record.expires
        return min(record.expires, record.refreshed + self.idle_timeout)

    def expired(self, record: Record, now: float) -> bool:
        return now >= self.ends_at(record)

    def refresh_due(self, record: Record, now: float) -> bool:
        """Whether a read writes the record back to record activity."""
        return now - record.refreshed >= self.refresh_interval

    @property
    def sliding(self) -> bool:
        """Whether a write moves the session's end (an idle timeout is set)."""
        return self.idle_timeout is not None

    def record_ttl(self, record: Record, now: float) -> float:
        """Seconds until the record expires, as of a write at `now`."""
        left = record.expires - now
        return left if self.idle_timeout is None else min(left, self.idle_timeout)

    def record_expiry(self, record: Record, now: float) -> tuple[str, int]:
        """How the record's key expires after a write at `now`: at its absolute end
        (PEXPIREAT, ms), or, with an idle timeout, after its TTL (PEXPIRE, ms)."""
        if self.idle_timeout is None:
            return ("PEXPIREAT", ms(record.expires))
        return ("PEXPIRE", ms(self.record_ttl(record, now)))

    def index_score(self, record: Record, now: float) -> int:
        """The record's score in its user's index after a write at `now`: when it ends, ms."""
        return ms(now + self.record_ttl(record, now))

    def seconds_left(self, record: Record, now: float) -> int:
        """Whole seconds until the session's absolute end: the cookie's Max-Age."""
        return max(0, int(record.expires - now))

    # -- epochs --------------------------------------------------------------------------------

    @property
    def epoch_ttl_ms(self) -> int:
        """Epochs (and indexes) outlive every session stamped since they were last set."""
        return self.lifetime * 1000 + EPOCH_TTL_MARGIN_MS


def cache_ttl_ms(cache_ttl: float) -> int:
    """SQLEpochs' cache_ttl, in ms: how long Redis keeps its copy of an epoch (0: no copy)."""
    if isinstance(cache_ttl, bool) or not isinstance(cache_ttl, (int, float)):
        raise ConfigurationError("cache_ttl must be a number of seconds")
    ttl_ms = round(cache_ttl * 1000)
    if cache_ttl < 0 or (cache_ttl > 0 and ttl_ms == 0):
        raise ConfigurationError("cache_ttl must be 0 (no cache) or at least 0.001 seconds")
    return ttl_ms


def custom_expiry_passed(expiry: object, refreshed: float, now: float) -> bool:
    """Whether a session's own expiry (Django's ``set_expiry``) has passed at `now`: a
    datetime in ISO format, or seconds of inactivity since `refreshed`."""
    if isinstance(expiry, str):
        try:
            return now >= datetime.fromisoformat(expiry).timestamp()
        except ValueError:
            return False
    if isinstance(expiry, int) and not isinstance(expiry, bool) and expiry > 0:
        return now - refreshed >= expiry
    return False


def ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


def _seconds(value: int | timedelta | None, name: str) -> int | None:
    """A lifetime given as a timedelta, in whole seconds."""
    if not isinstance(value, timedelta):
        return value
    seconds = value.total_seconds()
    if seconds != int(seconds):
        raise ConfigurationError(f"{name} must be a whole number of seconds")
    return int(seconds)
