"""What a run keeps: pyperf benchmarks (one pyperf Run per interleaved round) in
``latest.json``, readable by ``python -m pyperf show|stats|compare_to``, and the counted
facts that are not timings (round trips, 503s, increments kept) in ``facts.json``."""

from __future__ import annotations

import importlib.metadata
import json
import os
import statistics
from pathlib import Path
from typing import Any

import pyperf
import redis

from .common import REDIS_URL

VARYING = ("date", "uptime", "mem_max_rss", "load_avg_1min", "runnable_threads")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """pyperf's own description of the machine, with the versions that matter here."""
    found = pyperf.Run([1.0], metadata={"name": "machine"}).get_metadata()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        server = str(client.info("server")["redis_version"])
    finally:
        client.close()
    found = {k: v for k, v in found.items() if k not in (*VARYING, "name")}
    packages = ("redis", "hiredis", "starlette", "starsessions", "uvicorn", "uvloop")
    found.update({f"version_{p}": _version(p) for p in packages})
    found.update(version_redis_server=server, version_ours=_version("session-middleware"))
    return found


class Results:
    def __init__(self, metadata: dict[str, Any] | None = None) -> None:
        self.metadata = machine() if metadata is None else metadata
        self.runs: dict[str, list[pyperf.Run]] = {}
        self.facts: dict[str, Any] = {}

    def add(self, name: str, values: list[float], unit: str = "second") -> None:
        """One round of `name`: its values (seconds per request, bytes, or integers)."""
        metadata = {**self.metadata, "name": name, "unit": unit}
        self.runs.setdefault(name, []).append(
            pyperf.Run(values, metadata=metadata, collect_metadata=False)
        )

    def rounds(self, name: str) -> list[float]:
        """The mean of each round of `name`, in order."""
        return [statistics.fmean(run.values) for run in self.runs.get(name, [])]

    def median(self, name: str) -> float:
        return statistics.median(self.rounds(name))

    def names(self, prefix: str = "") -> list[str]:
        return [name for name in self.runs if name.startswith(prefix)]

    def ratio(self, a: str, b: str) -> tuple[float, float, float]:
        """a ÷ b round by round (both were taken in the same round, side by side): median,
        min, max; medians ÷ medians when the rounds do not pair."""
        first, second = self.rounds(a), self.rounds(b)
        if len(first) != len(second):
            value = statistics.median(first) / statistics.median(second)
            return value, value, value
        ratios = [x / y for x, y in zip(first, second, strict=True)]
        return statistics.median(ratios), min(ratios), max(ratios)

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "latest.json"
        benchmarks = [pyperf.Benchmark(runs) for runs in self.runs.values()]
        if benchmarks:
            pyperf.BenchmarkSuite(benchmarks).dump(str(path), replace=True)
        (directory / "facts.json").write_text(json.dumps(self.facts, indent=1))
        return path

    @classmethod
    def load(cls, directory: Path) -> Results:
        found = cls(metadata={})
        found.facts = json.loads((directory / "facts.json").read_text())
        if os.path.exists(directory / "latest.json"):
            suite = pyperf.BenchmarkSuite.load(str(directory / "latest.json"))
            for bench in suite.get_benchmarks():
                found.runs[bench.get_name()] = bench.get_runs()
                found.metadata = bench.get_metadata()
        return found

    def unit(self, name: str) -> str:
        return str(self.runs[name][0].get_metadata()["unit"])
