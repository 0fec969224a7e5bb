"""Where one scenario's time goes: a pyinstrument tree, and cProfile grouped by package.

``python -m benchmarks profile --variant ours-redis --scenario read`` writes
runs/full/profile-ours-redis-read.txt.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
from pathlib import Path

from .common import delete_prefix, new_prefix
from .inprocess import prepare
from .variants import build

GROUPS = (
    ("session_middleware", "session_middleware (ours)"),
    ("/redis/", "redis-py"),
    ("starsessions", "starsessions"),
    ("starlette", "starlette"),
    ("itsdangerous", "itsdangerous"),
    ("/asyncio/", "asyncio event loop"),
    ("selectors.py", "asyncio event loop"),
    ("/json/", "json"),
    ("hmac.py", "hmac/hashlib"),
    ("base64.py", "base64"),
    ("benchmarks", "benchmark app + driver"),
)


def _group(filename: str) -> str:
    for needle, name in GROUPS:
        if needle in filename:
            return name
    return "C builtins (socket send, hashing, isinstance...)" if filename == "~" else "other"


def by_package(stats: pstats.Stats, requests: int) -> str:
    totals: dict[str, list[float]] = {}
    for (filename, _, _), (_, calls, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        entry = totals.setdefault(_group(filename), [0.0, 0.0])
        entry[0] += calls
        entry[1] += own
    whole = sum(own for _, own in totals.values())
    lines = [f"{'package':52s} {'calls/request':>14s} {'own time share':>15s}"]
    for name, (calls, own) in sorted(totals.items(), key=lambda item: -item[1][1]):
        lines.append(f"{name:52s} {calls / requests:14.1f} {own / whole:15.1%}")
    return "\n".join(lines)


async def _run(variant_key: str, scenario: str, requests: int) -> str:
    from pyinstrument import Profiler

    prefix = new_prefix()
    variant = build(variant_key, prefix)
    try:
        actions = await prepare(variant)
        action = actions[scenario]
        for _ in range(500):
            await action()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(requests):
            await action()
        profiler.disable()
        buffer = io.StringIO()
        stats = pstats.Stats(profiler, stream=buffer)
        grouped = by_package(stats, requests)
        stats.sort_stats("tottime").print_stats(30)
        sampler = Profiler(interval=0.0001, async_mode="disabled")
        sampler.start()
        for _ in range(requests):
            await action()
        sampler.stop()
        tree = sampler.output_text(unicode=True, color=False, show_all=False)
    finally:
        await variant.close()
        delete_prefix(prefix)
    return (
        f"# {variant.key}, scenario {scenario}, {requests} requests in-process\n\n"
        "## cProfile own time by package (deterministic; inflates many small calls)\n\n"
        f"{grouped}\n\n## pyinstrument (sampling every 0.1 ms)\n\n{tree}\n"
        f"## cProfile, top 30 functions by own time\n\n{buffer.getvalue()}"
    )


def main(variant_key: str, scenario: str, requests: int, directory: Path) -> Path:
    text = asyncio.run(_run(variant_key, scenario, requests))
    path = directory / f"profile-{variant_key}-{scenario}.txt"
    path.write_text(text)
    return path
