"""The command line: ``python -m benchmarks [--quick] [--only PART ...]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import (
    contention,
    endtoend,
    faults,
    inprocess,
    instructions,
    memory,
    profile,
    report,
    scale,
    sql,
    window,
)
from .scenarios import INVALIDATE, REQUESTS
from .settings import MODES, delete_prefix, new_prefix, with_overrides
from .variants import ORDER, available

PARTS = (
    "inprocess",
    "instructions",
    "endtoend",
    "contention",
    "memory",
    "window",
    "scale",
    "faults",
)
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"  # the summaries the README quotes (committed)
RUNS = HERE / "runs"  # raw figures, profiles and quick runs (ignored by git)


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(float(part)) for part in text.split(","))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="session_middleware against no sessions, Starlette's cookie sessions and "
        "starsessions, on the same app and the same Redis.",
    )
    p.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=("run", "profile", "report"),
        help="run the suite (default); profile one scenario; re-render latest.md "
        "from the run's latest.json",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="fewer repeats, 2 s wrk runs, 10 and 10^4 sessions; writes to runs/quick/",
    )
    p.add_argument(
        "--only", nargs="+", choices=PARTS, default=list(PARTS), help="run only these parts"
    )
    p.add_argument("--variants", nargs="+", choices=ORDER, default=list(ORDER))
    p.add_argument("--repeats", type=int, help="in-process repeats")
    p.add_argument("--iterations", type=int, help="in-process requests per repeat")
    p.add_argument("--e2e-repeats", type=int, help="wrk runs per variant and scenario")
    p.add_argument("--e2e-seconds", type=int, help="duration of one wrk run")
    p.add_argument("--connections", type=int, dest="e2e_connections", help="wrk connections")
    p.add_argument("--scale-sizes", type=_sizes, help="e.g. 10,1e4,1e6")
    p.add_argument("--scale-repeats", type=int)
    p.add_argument("--window-rounds", type=int, help="local_cache window: invalidations timed")
    p.add_argument("--window-workers", type=int, help="local_cache window: worker processes")
    p.add_argument("--out", type=Path, help="write the summary and the raw figures here")
    p.add_argument("--variant", default="ours-redis", choices=ORDER, help="profile: the variant")
    p.add_argument(
        "--scenario",
        default="read",
        choices=[s.key for s in REQUESTS] + [INVALIDATE],
        help="profile: the scenario",
    )
    p.add_argument("--requests", type=int, default=20_000, help="profile: requests")
    return p


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _tidy(prefix: str) -> None:
    """Delete the keys a part left, so the next part (SCAN above all) meets a clean Redis."""
    log(f"deleted {delete_prefix(prefix)} keys under {prefix}")


def directories(args: argparse.Namespace) -> tuple[Path, Path]:
    """Where the summary (latest.md) and the raw figures (latest.json) go: a full run
    updates the committed summary in results/ and keeps its raw figures in runs/full/;
    --quick and --out keep both together."""
    if args.out is not None:
        return args.out, args.out
    if args.quick:
        return RUNS / "quick", RUNS / "quick"
    return RESULTS, RUNS / "full"


def write(results: dict[str, Any], summary: Path, raw: Path) -> Path:
    for directory in (summary, raw):
        directory.mkdir(parents=True, exist_ok=True)
    (raw / "latest.json").write_text(json.dumps(results, indent=1))
    path = summary / "latest.md"
    path.write_text(report.render(results))
    return path


def run(args: argparse.Namespace, argv: list[str]) -> Path:
    mode = with_overrides(
        MODES["quick" if args.quick else "full"],
        repeats=args.repeats,
        iterations=args.iterations,
        e2e_repeats=args.e2e_repeats,
        e2e_seconds=args.e2e_seconds,
        e2e_connections=args.e2e_connections,
        scale_sizes=args.scale_sizes,
        scale_repeats=args.scale_repeats,
        window_rounds=args.window_rounds,
        window_workers=args.window_workers,
    )
    wanted = [key for key in ORDER if key in args.variants]
    skipped = {key: why for key in wanted if (why := available(key)) is not None}
    for key, why in skipped.items():
        log(f"{key}: {why}")
    variants = [key for key in wanted if key not in skipped]
    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks", *argv]),
        "mode": asdict(mode),
        "environment": report.describe(),
        "skipped": skipped,
    }
    prefix = new_prefix()
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    if "ours-sql" in variants:
        sql.create(prefix)
    try:
        if "inprocess" in args.only:
            log("in-process timings and counts...")
            found = asyncio.run(inprocess.measure(mode, variants, prefix, log))
            results["inprocess"] = asdict(found)
            _tidy(prefix)
        if "instructions" in args.only:
            log("instructions per request under callgrind...")
            counted = instructions.measure(
                variants, list(mode.instruction_scenarios), mode.instruction_requests, prefix, log
            )
            results["instructions"] = asdict(counted)
            _tidy(prefix)
        if "endtoend" in args.only:
            log("end-to-end under uvicorn + wrk...")
            results["endtoend"] = asdict(endtoend.measure(mode, variants, prefix, log))
            _tidy(prefix)
        if "contention" in args.only:
            log("concurrent writes to one session under uvicorn + wrk...")
            results["contention"] = asdict(contention.measure(mode, variants, prefix, log))
            _tidy(prefix)
        if "memory" in args.only:
            log("memory per session...")
            usages = asyncio.run(memory.measure(variants, prefix))
            results["memory"] = [asdict(usage) for usage in usages]
            if "ours-cache" in variants:
                cached = asyncio.run(memory.measure_cache(prefix))
                results["memory_cache"] = asdict(cached) | {"per_session": cached.per_session}
            _tidy(prefix)
        if "window" in args.only:
            log("local_cache invalidation window across worker processes...")
            results["window"] = asdict(asyncio.run(window.measure(mode, prefix, log)))
            _tidy(prefix)
        if "scale" in args.only:
            log("invalidation at scale...")
            sizes = asyncio.run(scale.measure(mode, prefix, log))
            results["scale"] = [asdict(size) for size in sizes]
        if "faults" in args.only:
            log("a burst, dropped connections and a restart, on redis-servers of their own...")
            results["faults"] = asdict(faults.measure(mode, log))
    finally:
        _tidy(prefix)
        if "ours-sql" in variants:
            sql.drop(prefix)
    results["seconds"] = round(time.monotonic() - started, 1)
    results["load"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return write(results, *directories(args))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    summary, raw = directories(args)
    if args.command == "profile":
        raw.mkdir(parents=True, exist_ok=True)
        log(f"wrote {profile.main(args.variant, args.scenario, args.requests, raw)}")
        return 0
    if args.command == "report":
        results = json.loads((raw / "latest.json").read_text())
        log(f"wrote {write(results, summary, raw)}")
        return 0
    path = run(args, argv)
    log(f"wrote {path}")
    return 0
