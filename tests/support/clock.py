"""The wall clock an integration reads, moved forward by hand: a test that needs a later
time (a session past its end, one login after another) says so, and never sleeps for it."""

from __future__ import annotations

import time
from types import ModuleType

import pytest


class Clock:
    """Stands in for the `time` module an integration module imported: its `time()` is the
    real clock plus every `advance` so far."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def clock_of(monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> Clock:
    """One Clock read by each of `modules` (each imported `time`) until the test ends."""
    clock = Clock()
    for module in modules:
        monkeypatch.setattr(module, "time", clock)
    return clock
