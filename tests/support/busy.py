"""Processes spinning on the CPU, for tests and benchmarks of a worker on a busy machine."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from .redis_servers import spawn


@contextlib.contextmanager
def busy_processes(count: int, directory: Path) -> Iterator[None]:
    """`count` processes spinning on the CPU for the `with` block (logs in `directory`)."""
    spinners = [
        spawn([sys.executable, "-c", "while True: pass"], directory / f"spin{i}.log")
        for i in range(count)
    ]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                spinner.wait(timeout=10)
