"""The command line: ``python -m benchmarks [--quick] [--only PART ...]``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from . import (
    endtoend,
    faults,
    inprocess,
    instructions,
    profile,
    redis_cost,
    report,
    scale,
    sql,
    window,
)
from .common import delete_prefix, new_prefix
from .results import Results
from .variants import COLLECTOR_SETTINGS, COLLECTOR_VARIABLE, ORDER, available

PARTS = [
    "inprocess",
    "instructions",
    "endtoend",
    "contention",
    "redis",
    "window",
    "scale",
    "faults",
]
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Mode:
    rounds: int  # interleaved rounds, in-process
    iterations: int  # requests per in-process batch
    e2e_rounds: int  # interleaved rounds, end to end
    seconds: float  # one wrk run
    requests: int  # callgrind: requests per case
    operations: int  # Redis's CPU: operations per phase and round
    redis_rounds: int  # Redis's CPU: interleaved rounds
    sizes: tuple[int, ...]  # scale: sessions in Redis
    window: int  # local_cache window: invalidations timed
    kills: int  # faults: CLIENT KILLs under load


MODES = {
    "quick": Mode(3, 200, 3, 2.0, 200, 500, 5, (10, 10_000), 30, 20),
    "full": Mode(15, 600, 3, 5.0, 300, 1_000, 9, (10, 10_000, 1_000_000), 200, 80),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("command", nargs="?", default="run", choices=("run", "profile", "report"))
    p.add_argument("--quick", action="store_true", help="fewer rounds, shorter runs")
    p.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--variants", nargs="+", choices=ORDER, default=list(ORDER))
    p.add_argument("--rounds", type=int, help="interleaved rounds (in-process, end to end)")
    p.add_argument("--seconds", type=float, help="duration of one wrk run")
    p.add_argument("--out", type=Path, help="where latest.json, facts.json and latest.md go")
    p.add_argument(
        "--gc",
        default="default",
        choices=COLLECTOR_SETTINGS,
        help="the collector's setting in every server the run starts (see docs/deployment.md)",
    )
    p.add_argument("--variant", default="ours-redis", choices=ORDER, help="profile: variant")
    p.add_argument("--scenario", default="read", help="profile: scenario")
    p.add_argument("--requests", type=int, default=20_000, help="profile: requests")
    return p


def run(args: argparse.Namespace, argv: list[str], out: Path) -> Results:
    mode = MODES["quick" if args.quick else "full"]
    if args.rounds:
        mode = replace(mode, rounds=args.rounds, e2e_rounds=args.rounds, redis_rounds=args.rounds)
    if args.seconds:
        mode = replace(mode, seconds=args.seconds)
    variants = [key for key in args.variants if available(key) is None]
    results = Results()
    results.facts["command"] = " ".join(["python -m benchmarks", *argv])
    os.environ[COLLECTOR_VARIABLE] = args.gc  # read by every server the run starts
    prefix, started, load = new_prefix(), time.monotonic(), os.getloadavg()[0]
    if "ours-sql" in variants:
        sql.create(prefix)
    try:
        for part in [p for p in PARTS if p in args.only]:
            print(f"{part}...", file=sys.stderr, flush=True)
            if part == "inprocess":
                asyncio.run(
                    inprocess.measure(results, variants, prefix, mode.rounds, mode.iterations)
                )
            elif part == "instructions":
                scenarios = ["read"] if args.quick else ["read", "write"]
                instructions.measure(
                    results, variants, scenarios, mode.requests, prefix, not args.quick
                )
            elif part == "endtoend" or (part == "contention" and "endtoend" not in args.only):
                endtoend.measure(
                    results,
                    variants,
                    prefix,
                    mode.e2e_rounds,
                    mode.seconds,
                    contention="contention" in args.only,
                    main=part == "endtoend",
                )
            elif part == "redis":
                redis_cost.measure(results, mode.operations, mode.redis_rounds)
            elif part == "window":
                asyncio.run(window.measure(results, prefix, mode.window, 3))
            elif part == "scale":
                asyncio.run(scale.measure(results, prefix, list(mode.sizes), 5))
            elif part == "faults":
                faults.measure(results, mode.kills)
            delete_prefix(prefix)
    finally:
        delete_prefix(prefix)
        if "ours-sql" in variants:
            sql.drop(prefix)
    results.facts["seconds"] = round(time.monotonic() - started)
    results.facts["load"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    out = args.out or HERE / "runs" / ("quick" if args.quick else "full")
    if args.command == "profile":
        out.mkdir(parents=True, exist_ok=True)
        print(f"wrote {profile.main(args.variant, args.scenario, args.requests, out)}")
        return 0
    results = Results.load(out) if args.command == "report" else run(args, argv, out)
    results.save(out)
    (out / "latest.md").write_text(report.render(results))
    print(f"wrote {out / 'latest.md'} and {out / 'latest.json'} (python -m pyperf show)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
