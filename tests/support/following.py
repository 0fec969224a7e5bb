"""The threads that follow a Sentinel service's master for a configuration."""

from __future__ import annotations

import threading
import time

from session_middleware import SessionConfig


def following_threads(config: SessionConfig) -> list[threading.Thread]:
    """The threads that follow the master for `config` (one per sentinel), all running."""
    follower = config.redis._follower  # type: ignore[union-attr]
    assert follower is not None
    threads = list(follower._threads)
    assert threads and all(thread.is_alive() for thread in threads)
    return threads


def ended_within(threads: list[threading.Thread], seconds: float) -> bool:
    """Whether every thread of `threads` ends within `seconds`."""
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))
    return not any(thread.is_alive() for thread in threads)
