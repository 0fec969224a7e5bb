"""Every lifetime and expiry, decided in one place (_protocol/timing.py), with no Redis."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from session_middleware import ConfigurationError
from session_middleware._protocol.records import Record
from session_middleware._protocol.timing import Timing, cache_ttl_ms, custom_expiry_passed

NOW = 1_700_000_000.0


def record(created: float, refreshed: float, lifetime: int = 3600) -> Record:
    return Record({}, created, created + lifetime, refreshed, None, None)


def test_defaults_follow_the_settings() -> None:
    assert Timing.from_settings(None, None, None) == Timing(14 * 24 * 3600, None, 300)
    assert Timing.from_settings(3600, 600, None) == Timing(3600, 600, 60.0)
    assert Timing.from_settings(
        timedelta(hours=1), timedelta(minutes=10), timedelta(seconds=30)
    ) == Timing(3600, 600, 30.0)


@pytest.mark.parametrize(
    "settings, message",
    [
        ((1.5, None, None), "max_age must be a whole number"),
        ((timedelta(seconds=1.5), None, None), "max_age must be a whole number"),
        ((60, 0, None), "idle_timeout must be a positive"),
        ((60, 30, 30), "refresh_interval must be positive and shorter than idle_timeout"),
        ((60, None, 0), "refresh_interval must be positive"),
    ],
)
def test_settings_that_cannot_work_are_refused(
    settings: tuple[Any, Any, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Timing.from_settings(*settings)


def test_without_idle_timeout_a_record_ends_at_its_lifetime() -> None:
    timing = Timing(3600, None, 300)
    stored = record(NOW - 3000, NOW - 3000)
    assert timing.ends_at(stored) == NOW + 600
    assert not timing.expired(stored, NOW + 599) and timing.expired(stored, NOW + 600)
    assert timing.record_expiry(stored, NOW) == ("PEXPIREAT", int((NOW + 600) * 1000))
    assert timing.seconds_left(stored, NOW) == 600


def test_with_idle_timeout_the_earlier_end_wins() -> None:
    timing = Timing(3600, 600, 60)
    idle = record(NOW - 1000, NOW - 500)
    assert timing.ends_at(idle) == NOW + 100  # idle ends it first
    assert timing.expired(idle, NOW + 100) and not timing.expired(idle, NOW + 99)
    assert timing.record_expiry(idle, NOW) == ("PEXPIRE", 600_000)
    assert timing.index_score(idle, NOW) == int((NOW + 600) * 1000)
    late = record(NOW - 3500, NOW - 10)
    assert timing.ends_at(late) == NOW + 100  # the lifetime ends it first
    assert timing.record_expiry(late, NOW) == ("PEXPIRE", 100_000)
    assert timing.seconds_left(late, NOW) == 100


def test_a_read_refreshes_at_the_interval_only() -> None:
    timing = Timing(3600, 600, 60)
    assert not timing.refresh_due(record(NOW - 59, NOW - 59), NOW)
    assert timing.refresh_due(record(NOW - 60, NOW - 60), NOW)


def test_epochs_outlive_the_sessions_stamped_with_them() -> None:
    assert Timing(3600, None, 300).epoch_ttl_ms == 3600 * 1000 + 60_000


def test_the_epoch_cache_ttl() -> None:
    assert cache_ttl_ms(0.25) == 250 and cache_ttl_ms(0) == 0
    for bad in (-1, True, "300", 0.0001):
        with pytest.raises(ConfigurationError, match="cache_ttl"):
            cache_ttl_ms(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "expiry, passed",
    [
        ("2023-11-14T22:13:19+00:00", True),
        ("2099-01-01T00:00:00+00:00", False),
        ("not a date", False),
        (100, True),
        (1000, False),
        (True, False),
        (0, False),
        (None, False),
    ],
)
def test_a_custom_expiry(expiry: object, passed: bool) -> None:
    assert custom_expiry_passed(expiry, NOW - 500, NOW) is passed
