"""The report: the machine and versions a run measured, the statistics of repeated
measurements, and the results as Markdown (targets first, then every table)."""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import math
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from .contention import KINDS
from .endtoend import wrk_path
from .inprocess import REFERENCES
from .scale import METHODS
from .scenarios import INVALIDATE, INVALIDATE_LABEL, REQUESTS
from .settings import REDIS_URL
from .variants import LABELS

SCENARIO_LABELS = {s.key: s.label for s in REQUESTS} | {INVALIDATE: INVALIDATE_LABEL}
OURS = "ours-redis"
CACHED = "ours-cache"


# -- the machine and the versions, for the report's first line --------------------------


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _wrk_version() -> str:
    path = wrk_path()
    if path is None:
        return "not installed"
    run = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)
    words = (run.stdout + run.stderr).split()
    return words[1] if len(words) > 1 else "unknown"


def describe() -> dict[str, str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        server = client.info("server")
    finally:
        client.close()
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis-py": _version("redis"),
        "hiredis": _version("hiredis"),
        "redis server": str(server.get("redis_version")),
        "starlette": _version("starlette"),
        "starsessions": _version("starsessions"),
        "session-middleware": _version("session-middleware"),
        "uvicorn": f"{_version('uvicorn')} (loop {loop}, http {http})",
        "wrk": _wrk_version(),
    }


def line(env: dict[str, str]) -> str:
    return (
        f"{env['cpus']} CPUs ({env['cpu']}), {env['os']}, Python {env['python']}, "
        f"redis-py {env['redis-py']} (hiredis {env['hiredis']}), Redis server "
        f"{env['redis server']}, starlette {env['starlette']}, starsessions "
        f"{env['starsessions']}, uvicorn {env['uvicorn']}, wrk {env['wrk']}; {env['date']}"
    )


# -- median and spread of repeated measurements ------------------------------------------


@dataclass(frozen=True)
class Summary:
    median: float
    q1: float
    q3: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("no values")
        ordered = sorted(values)
        if len(ordered) >= 2:
            q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
        else:
            q1 = q3 = ordered[0]
        return cls(statistics.median(ordered), q1, q3, ordered[0], ordered[-1], len(ordered))

    def as_dict(self) -> dict[str, float]:
        return {
            "median": self.median,
            "q1": self.q1,
            "q3": self.q3,
            "min": self.low,
            "max": self.high,
            "n": self.n,
        }


def paired_ratios(values: Sequence[float], references: Sequence[float]) -> list[float]:
    """value / reference for each repeat: both were taken in the same repeat, side by side."""
    return [value / reference for value, reference in zip(values, references, strict=True)]


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value with `share` of the values at or below."""
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


# -- the tables -------------------------------------------------------------------------


def _us(values: list[float]) -> str:
    s = Summary.of(values)
    return f"{s.median:.0f} ({s.q1:.0f}-{s.q3:.0f})"


def _ratio(values: list[float]) -> str:
    s = Summary.of(values)
    return f"{s.median:.2f}x ({s.q1:.2f}-{s.q3:.2f})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _variants(section: dict[str, Any]) -> list[str]:
    return [key for key in LABELS if key in section]


def targets(results: dict[str, Any]) -> list[str]:
    rows: list[list[str]] = []
    inproc, e2e, scale = results.get("inprocess"), results.get("endtoend"), results.get("scale")

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    if inproc and OURS in inproc["counts"]:
        read = inproc["counts"][OURS]["read"]
        ok = read["round_trips"] == 1 and read["commands"] == 1 and read["writes"] == 0
        rows.append(
            [
                "logged-in read: 1 round trip, 1 command, no write",
                f"{read['round_trips']:g} round trip, {read['commands']:g} command "
                f"({', '.join(read['sequence'])}), {read['writes']:g} writes",
                verdict(ok),
            ]
        )
        write = inproc["counts"][OURS]["write"]
        extra = write["round_trips"] - read["round_trips"]
        rows.append(
            [
                "logged-in write: at most one extra round trip",
                f"{write['round_trips']:g} round trips ({', '.join(write['sequence'])}): "
                f"{extra:g} extra",
                verdict(extra <= 1),
            ]
        )
    if inproc and OURS in inproc["times"] and "floor" in inproc["times"]:
        ours = inproc["times"][OURS]["read"]
        get = inproc["references"]["get"]
        floor = inproc["times"]["floor"]["read"]
        total = Summary.of(paired_ratios(ours, get)).median
        added = Summary.of(
            paired_ratios([o - f for o, f in zip(ours, floor, strict=True)], get)
        ).median
        rows.append(
            [
                "logged-in read in-process ≤ 1.3x one bare redis.asyncio GET",
                f"whole request {total:.2f}x GET; added over the floor {added:.2f}x GET",
                verdict(added <= 1.3) + ("" if total <= 1.3 else " (whole request: missed)"),
            ]
        )
    counted = results.get("instructions") or {}
    if OURS in counted.get("per_request", {}) and "floor" in counted["per_request"]:
        ours, floor = counted["per_request"][OURS]["read"], counted["per_request"]["floor"]["read"]
        get = counted["references"]["ref-get"]
        rows.append(
            [
                "the same, in CPU instructions (callgrind: repeatable)",
                f"whole request {ours / get:.2f}x GET; added over the floor "
                f"{(ours - floor) / get:.2f}x GET; the floor alone {floor / get:.2f}x GET",
                verdict((ours - floor) / get <= 1.3)
                + ("" if ours / get <= 1.3 else " (whole request: missed)"),
            ]
        )
    served = counted.get("served", {})
    for key, peer, factor, text in (
        (OURS, "starsessions", 1.5, "≥ 1.5x starsessions"),
        (OURS, "starlette", 0.6, "≥ 60% of Starlette cookie sessions"),
        (CACHED, "starlette", 0.9, "with local_cache ≥ 90% of Starlette cookie sessions"),
    ):
        if key in served and peer in served:
            rows.append(
                [
                    f"logged-in read under uvicorn {text}, in the server's CPU instructions "
                    "(callgrind: repeatable)",
                    f"{served[key] / 1000:.0f}k vs {served[peer] / 1000:.0f}k instructions per "
                    f"request: a rate {served[peer] / served[key]:.2f}x theirs",
                    verdict(served[peer] / served[key] >= factor),
                ]
            )
    if e2e and e2e.get("rps") and OURS in e2e["rps"]:
        ours = Summary.of(e2e["rps"][OURS]["read"]).median
        for peer, factor, text in (
            ("starsessions", 1.5, "≥ 1.5x starsessions"),
            ("starlette", 0.6, "≥ 60% of Starlette cookie sessions"),
        ):
            if peer in e2e["rps"]:
                theirs = Summary.of(e2e["rps"][peer]["read"]).median
                rows.append(
                    [
                        f"end-to-end logged-in read {text}",
                        f"{ours:.0f} vs {theirs:.0f} req/s: {ours / theirs:.2f}x",
                        verdict(ours >= factor * theirs),
                    ]
                )
    rows += _cache_targets(results)
    rows += _write_targets(results)
    if scale and len(scale) >= 2:
        small, large = scale[0], scale[-1]
        a = Summary.of(small["times_us"]["epoch"]).median
        b = Summary.of(large["times_us"]["epoch"]).median
        per_set = [
            Summary.of(paired_ratios(size["times_us"]["epoch"], size["times_us"]["reference"]))
            for size in (small, large)
        ]
        trips = {small["round_trips"]["epoch"], large["round_trips"]["epoch"]}
        rows.append(
            [
                f"invalidate_user: the same cost at {small['sessions']:,} and "
                f"{large['sessions']:,} sessions",
                f"{a:.0f} µs vs {b:.0f} µs; {per_set[0].median:.2f}x vs "
                f"{per_set[1].median:.2f}x a bare SET timed beside it; round trips: "
                + ", ".join(f"{t:g}" for t in sorted(trips)),
                verdict(len(trips) == 1 and per_set[1].median <= 1.5 * per_set[0].median),
            ]
        )
    return _table(["target (issues 5 and 11)", "measured", ""], rows)


def _median_rps(runs: list[dict[str, Any]]) -> float:
    return Summary.of([run["rps"] for run in runs]).median


def _write_targets(results: dict[str, Any]) -> list[list[str]]:
    """Issue 11's rows: concurrent writes to one session, and a write's own cost."""
    rows: list[list[str]] = []
    section = results.get("contention") or {}
    runs = section.get("runs", {})
    if OURS in runs and "starsessions" in runs:
        for kind, label in KINDS.items():
            ratios, failed = [], 0
            for level in section["levels"]:
                ours, theirs = runs[OURS][kind][str(level)], runs["starsessions"][kind][str(level)]
                ratios.append((level, _median_rps(ours) / _median_rps(theirs)))
                failed += sum(run["non_2xx"] + run["socket_errors"] for run in ours)
            worst = min(ratio for _, ratio in ratios)
            rows.append(
                [
                    f"concurrent writes to one session ({label}): ≥ 0.9x starsessions at every "
                    "level, 0 non-2xx",
                    ", ".join(f"c{level} {ratio:.2f}x" for level, ratio in ratios)
                    + f"; {failed} non-2xx or socket errors",
                    "met" if worst >= 0.9 and failed == 0 else "**missed**",
                ]
            )
    counted = (results.get("instructions") or {}).get("per_request", {})
    if "write" in counted.get(OURS, {}) and "write" in counted.get("starsessions", {}):
        ours, theirs = counted[OURS]["write"], counted["starsessions"]["write"]
        rows.append(
            [
                "logged-in write in-process ≤ starsessions', in CPU instructions (callgrind)",
                f"{ours / 1000:.0f}k vs {theirs / 1000:.0f}k: {ours / theirs:.2f}x",
                "met" if ours <= theirs else "**missed**",
            ]
        )
    times = (results.get("inprocess") or {}).get("times", {})
    if "write" in times.get(OURS, {}) and "write" in times.get("starsessions", {}):
        ratio = Summary.of(paired_ratios(times[OURS]["write"], times["starsessions"]["write"]))
        rows.append(
            [
                "logged-in write in-process ≤ starsessions', in µs (same repeats)",
                f"{Summary.of(times[OURS]['write']).median:.0f} vs "
                f"{Summary.of(times['starsessions']['write']).median:.0f} µs: "
                f"{ratio.median:.2f}x ({ratio.q1:.2f}-{ratio.q3:.2f}) paired",
                "met" if ratio.median <= 1 else "**missed**",
            ]
        )
    return rows


def contention(section: dict[str, Any]) -> list[str]:
    out = ["## Concurrent writes to one session (issue 11)", ""]
    if section.get("skipped"):
        return [*out, section["skipped"]]
    out += [
        "Every wrk connection POSTs a counter increment in ONE logged-in session (a new one "
        "for each run), under uvicorn as in the end-to-end part (wrk -t1 -cC "
        f"-d{section['seconds']}s). *shared*: every request increments the same key; *own "
        "key*: request n increments key n mod C (wrk's one thread hands requests out in turn, "
        "so concurrent requests write different keys, a key per connection). Median req/s "
        "over the interleaved runs; *ratio* ours/starsessions; *non-2xx* and socket errors "
        "summed over the runs; *kept*: the sum of the session's counters read back after the "
        "run over the increments answered 2xx (in-flight requests when wrk stops can land "
        "after it counted, so a little over 100% is possible); the rest were lost updates.",
        "",
    ]
    runs = section["runs"]
    variants = _variants(runs)
    header = ["workload", "connections"]
    for key in variants:
        header += [f"{LABELS[key]} req/s", "non-2xx", "kept"]
    if OURS in runs and "starsessions" in runs:
        header.append("ratio")
    rows = []
    for kind, label in KINDS.items():
        for level in section["levels"]:
            row = [label, str(level)]
            for key in variants:
                cell = runs[key][kind][str(level)]
                requests = sum(run["requests"] - run["non_2xx"] for run in cell)
                kept = sum(run["kept"] for run in cell)
                failed = sum(run["non_2xx"] + run["socket_errors"] for run in cell)
                row += [
                    f"{_median_rps(cell):.0f}",
                    str(failed),
                    f"{100 * kept / requests:.0f}%" if requests else "-",
                ]
            if OURS in runs and "starsessions" in runs:
                ratio = _median_rps(runs[OURS][kind][str(level)]) / _median_rps(
                    runs["starsessions"][kind][str(level)]
                )
                row.append(f"{ratio:.2f}x")
            rows.append(row)
    return out + _table(header, rows)


def _cache_targets(results: dict[str, Any]) -> list[list[str]]:
    """The moonshot's rows: local_cache's reads, its throughput, its invalidation window."""
    rows: list[list[str]] = []
    inproc, e2e, window = results.get("inprocess"), results.get("endtoend"), results.get("window")
    if inproc and CACHED in inproc["counts"]:
        read = inproc["counts"][CACHED]["read"]
        first = read["first"]
        ok = (
            read["round_trips"] == 0
            and read["cache_hits"] == 1
            and first["round_trips"] == 1
            and first["writes"] == 0
        )
        rows.append(
            [
                "local_cache: a repeat logged-in read costs no round trip (the first read of a "
                "session: one)",
                f"repeat read: {read['round_trips']:g} round trips, {read['commands']:g} "
                f"commands, {read['cache_hits']:g} cache hit per request; first read: "
                f"{first['round_trips']:g} round trip ({', '.join(first['sequence'])}), "
                f"{first['cache_hits']:g} hits",
                "met" if ok else "**missed**",
            ]
        )
    rps = (e2e or {}).get("rps", {})
    if CACHED in rps and "starlette" in rps:
        ours = Summary.of(rps[CACHED]["read"]).median
        theirs = Summary.of(rps["starlette"]["read"]).median
        rows.append(
            [
                "local_cache: end-to-end logged-in read ≥ 90% of Starlette cookie sessions",
                f"{ours:.0f} vs {theirs:.0f} req/s: {ours / theirs:.2f}x",
                "met" if ours >= 0.9 * theirs else "**missed**",
            ]
        )
    if window and window["windows_us"]:
        values = window["windows_us"]
        rows.append(
            [
                "local_cache: measure the window between invalidate_user returning and the "
                "last worker dropping its copy",
                f"{window['workers']} worker processes, {len(values)} invalidations: median "
                f"{percentile(values, 0.5):.0f} µs, p99 {percentile(values, 0.99):.0f} µs, "
                f"max {max(values):.0f} µs after the call returned",
                "measured",
            ]
        )
    return rows


def inprocess(section: dict[str, Any]) -> list[str]:
    variants = _variants(section["times"])
    out = [
        "## In-process cost (µs per request)",
        "",
        "The app driven directly (a scope, a receive, a send; no HTTP client, no server), "
        "GC off while timing, as timeit does. Median over repeats (interquartile range); "
        "the variants and the references run interleaved in each repeat. "
        "*xfloor* is the median of per-repeat ratios to the same route with no session "
        "middleware.",
        "",
    ]
    rows = []
    for scenario, label in SCENARIO_LABELS.items():
        row = [label]
        for key in variants:
            values = section["times"][key].get(scenario)
            if not values:
                row.append("n/a")
                continue
            cell = _us(values)
            floor = section["times"].get("floor", {}).get(scenario)
            if floor and key != "floor":
                cell += f"<br>{Summary.of(paired_ratios(values, floor)).median:.1f}x floor"
            row.append(cell)
        rows.append(row)
    out += _table(["scenario"] + [LABELS[k] for k in variants], rows)
    out += [
        "",
        "n/a: the peers have no per-user operation; what their users build instead (SCAN, a "
        "per-user SET) is timed under *Invalidating one user among N sessions*.",
        "",
        "References, measured in the same repeats:",
        "",
    ]
    ref_rows = [[REFERENCES[name], _us(values)] for name, values in section["references"].items()]
    if OURS in section["times"] and "floor" in section["times"]:
        get = section["references"]["get"]
        ours = section["times"][OURS]["read"]
        floor = section["times"]["floor"]["read"]
        ref_rows.append(
            ["session_middleware logged-in read / bare GET", _ratio(paired_ratios(ours, get))]
        )
        added = [o - f for o, f in zip(ours, floor, strict=True)]
        ref_rows.append(
            ["(session_middleware read - floor) / bare GET", _ratio(paired_ratios(added, get))]
        )
        refs = section["references"]
        command, what = (
            ("read_script", "READ script") if "read_script" in refs else ("mget", "MGET")
        )
        own = [a - m for a, m in zip(added, refs[command], strict=True)]
        ref_rows.append(
            [
                f"session_middleware's own time in a read: read - floor - bare {what} (µs)",
                _us(own),
            ]
        )
        if "read_script" in refs and "pipeline" in refs:
            get = refs["get"]
            for name in ("read_script", "pipeline"):
                ref_rows.append(
                    [f"{REFERENCES[name]} / bare GET", _ratio(paired_ratios(refs[name], get))]
                )
    floor_read = section["times"].get("floor", {}).get("read")
    for key in ("starlette", CACHED):
        if floor_read and key in section["times"]:
            added = [t - f for t, f in zip(section["times"][key]["read"], floor_read, strict=True)]
            ref_rows.append([f"{LABELS[key]}: logged-in read - floor (µs)", _us(added)])
    out += _table(["reference", "µs (IQR) or ratio"], ref_rows)
    if CACHED in section["times"]:
        out += [
            "",
            f"{LABELS[CACHED]}: every timed read after the first is served from the cache "
            "(a repeat read of the same session); every timed write changes the record, so the "
            "write's own read misses the cache and goes to Redis.",
        ]
    return out


def instructions(section: dict[str, Any]) -> list[str]:
    out = ["## CPU instructions per request (callgrind)", ""]
    if section.get("skipped"):
        return [*out, f"Not measured: {section['skipped']}."]
    out += [
        "Instructions the web worker's process executes per request, in thousands, counted "
        "by valgrind's callgrind (Redis's own work is not included): the same code gives the "
        "same count on an idle or a busy machine, so small changes show here when "
        f"microseconds drown them. {section['requests']} requests per scenario, minus a run "
        "of the same process with none. *xfloor*: over the same route with no session "
        "middleware.",
        "",
    ]
    per_request = section["per_request"]
    keys = _variants(per_request)
    scenarios = list(next(iter(per_request.values()), {}))
    floor = per_request.get("floor", {})
    rows = []
    for scenario in scenarios:
        row = [SCENARIO_LABELS[scenario]]
        for key in keys:
            value = per_request[key][scenario]
            cell = f"{value / 1000:.0f}k"
            if key != "floor" and scenario in floor:
                cell += f"<br>{value / floor[scenario]:.1f}x floor"
            row.append(cell)
        rows.append(row)
    out += _table(["scenario", *(LABELS[key] for key in keys)], rows)
    refs = section["references"]
    lines = [
        ["bare redis.asyncio GET", f"{refs['ref-get'] / 1000:.0f}k"],
        ["bare redis.asyncio MGET of 2 keys", f"{refs['ref-mget'] / 1000:.0f}k"],
    ]
    for name, what in (
        ("ref-read", "EVAL of the READ script (a record HASH and its epoch, one round trip)"),
        ("ref-pipeline", "pipeline of HGETALL + GET (the same two keys, one round trip)"),
    ):
        if name in refs:
            lines.append(
                [what, f"{refs[name] / 1000:.0f}k ({refs[name] / refs['ref-get']:.2f}x GET)"]
            )
    read_ref, read_what = (
        ("ref-read", "READ script") if "ref-read" in refs else ("ref-mget", "MGET")
    )
    if "read" in floor:
        for key, what in (
            (OURS, f"session_middleware's own work in a read: read - floor - bare {read_what}"),
            ("starlette", "Starlette cookie SessionMiddleware: read - floor"),
            (CACHED, "session_middleware + local_cache: read (a cache hit) - floor"),
        ):
            if key in per_request:
                own = per_request[key]["read"] - floor["read"]
                if key == OURS:
                    own -= refs[read_ref]
                lines.append([what, f"{own / 1000:.0f}k"])
    out += ["", *_table(["reference", "instructions per request"], lines)]
    served = section.get("served", {})
    if served:
        out += [
            "",
            "Under uvicorn (one worker, uvloop and httptools when installed), a logged-in read "
            "sent over one keep-alive connection, one request at a time: the instructions of "
            "the whole server process per request, the CPU side of the end-to-end figures "
            "below without their noise (Redis's and the load generator's work, which share "
            "the machine's CPUs there, are not in it). *rate*: requests per instruction, "
            "relative to Starlette's cookie sessions.",
            "",
        ]
        cookie = served.get("starlette")
        rows = [
            [
                LABELS[key],
                f"{served[key] / 1000:.0f}k",
                f"{cookie / served[key]:.2f}x" if cookie else "",
            ]
            for key in _variants(served)
        ]
        out += _table(["variant", "instructions per request", "rate"], rows)
    return out


def counts(section: dict[str, Any]) -> list[str]:
    variants = [k for k in _variants(section["counts"]) if k != "floor"]
    out = [
        "## Redis round trips and commands per request",
        "",
        "Counted through a connection class that counts what is sent (like "
        "tests/support/counting.py), averaged over 10 requests.",
        "",
    ]
    rows = []
    for scenario, label in SCENARIO_LABELS.items():
        row = [label]
        for key in variants:
            c = section["counts"][key].get(scenario)
            row.append("n/a" if c is None else _count_cell(c))
        rows.append(row)
    out += _table(["scenario"] + [LABELS[k] for k in variants], rows)
    if CACHED in section["counts"]:
        out += [
            "",
            f"{LABELS[CACHED]} cannot be handed a counting client (local_cache opens its own "
            "tracking connections from the URL), so for it every redis.asyncio connection of "
            "the process is counted while nothing else runs, and *hit* is the cache's own count "
            "of reads it served per request. *first read*: the first read of a session that "
            "just logged in, counted apart from the repeat reads.",
        ]
    return out


def _count_cell(c: dict[str, Any]) -> str:
    if c["commands"] == 0:
        cell = "0"
    else:
        cell = (
            f"{c['round_trips']:g} RT, {c['commands']:g} cmd "
            f"({' '.join(c['sequence'])}), {c['writes']:g} write"
        )
    if c.get("sql_queries"):
        cell += f"; {c['sql_queries']:g} SQL"
    if c.get("cache_hits") is not None:
        cell += f"; {c['cache_hits']:g} hit"
    if c.get("first"):
        cell += f"<br>first read: {_count_cell(c['first'])}"
    return cell


def endtoend(section: dict[str, Any], mode: dict[str, Any]) -> list[str]:
    out = ["## End-to-end throughput (requests/s)", ""]
    if section.get("skipped"):
        return [*out, section["skipped"]]
    variants = _variants(section["rps"])
    out += [
        f"uvicorn, one worker on 127.0.0.1, access log off; wrk -t1 -c{mode['e2e_connections']} "
        f"-d{mode['e2e_seconds']}s on loopback, {mode['e2e_repeats']} interleaved run(s) per "
        "cell. Median (min-max) and the share of the floor's rate in the same run. "
        "wrk, uvicorn and Redis share the CPUs.",
        "",
    ]
    rows = []
    for scenario in REQUESTS:
        row = [scenario.label]
        floor = section["rps"].get("floor", {}).get(scenario.key)
        for key in variants:
            values = section["rps"][key][scenario.key]
            s = Summary.of(values)
            cell = f"{s.median:.0f} ({s.low:.0f}-{s.high:.0f})"
            if floor and key != "floor":
                cell += f"<br>{s.median / Summary.of(floor).median:.0%} of floor"
            row.append(cell)
        rows.append(row)
    out += _table(["scenario"] + [LABELS[k] for k in variants], rows)
    for key, scenarios in section.get("cache", {}).items():
        runs = scenarios.get("read", [])
        if not runs:
            continue
        requests = sum(run["requests"] for run in runs)
        hits = sum(run["hits"] for run in runs)
        changes = sum(run["listener_changes"] for run in runs)
        healthy = all(run["healthy"] for run in runs)
        out += [
            "",
            f"{LABELS[key]} under load, logged-in read: the cache counted {hits:,} hits over "
            f"the {requests:,} requests wrk completed in the timed runs ({hits / requests:.1%}; "
            "wrk does not count the requests still in flight when a run stops, so a figure "
            f"slightly over 100% means every read was a hit); {changes} listener change(s), "
            f"healthy after every run: {'yes' if healthy else '**no**'}.",
        ]
    return out


def memory_cache(usage: dict[str, Any]) -> list[str]:
    return [
        f"{LABELS[CACHED]}, in the process: {usage['sessions']:,} sessions of distinct users "
        f"read once leave {usage['entries']:,} cache entries (a record and an epoch each), "
        f"{usage['bytes'] / 1e6:.2f} MB of Python objects (the OrderedDict, its keys and "
        f"values, sys.getsizeof): {usage['per_session']:.0f} bytes per session. A user's "
        "other sessions share the epoch entry.",
    ]


def window(section: dict[str, Any]) -> list[str]:
    values = section["windows_us"]
    drops = [drop for per_round in section["drops_us"] for drop in per_round]
    calls = section["calls_us"]
    early = sum(1 for drop in drops if drop < 0)

    def row(label: str, figures: list[float]) -> list[str]:
        return [
            label,
            f"{percentile(figures, 0.5):.0f}",
            f"{percentile(figures, 0.99):.0f}",
            f"{max(figures):.0f}",
            f"{min(figures):.0f}",
        ]

    out = [
        "## local_cache: the invalidation window",
        "",
        f"{section['workers']} worker processes, each with its own configuration and "
        "local_cache, read one user's session until the user's epoch is in their cache, then "
        "wait idle in their event loop; the coordinator process (local_cache on too) calls "
        f"`ainvalidate_user`. Repeated {len(values)} times. Each worker notes the moment the "
        "epoch key left its cache, from inside the cache's `invalidate`, called by its "
        "listener when Redis's invalidation message arrives; every process reads the same "
        "clock (`time.monotonic_ns`, CLOCK_MONOTONIC). µs after `ainvalidate_user` returned; "
        "negative: that copy was gone before the call returned (Redis queues the invalidation "
        "message while it runs the SET, before the SET's own reply).",
        "",
    ]
    rows = [
        row("window: the last worker drops its copy", values),
        row("any one worker drops its copy", drops),
        row("ainvalidate_user itself (call to return)", calls),
    ]
    if section.get("busy_windows_us"):
        rows.append(row("window, handlers burning 20 ms of CPU", section["busy_windows_us"]))
    if section.get("partition_windows_us"):
        label = "window, silent partition: the last read served as the user"
        rows.append(row(label, section["partition_windows_us"]))
    out += _table(["µs", "median", "p99", "max", "min"], rows)
    out += [
        "",
        f"Copies dropped before the call returned: {early} of {len(drops)}. Caches dropped whole "
        f"(a listener lost) instead of the one key: {section['whole_drops']}. The listener is a "
        "thread of its own, so a handler that keeps the event loop busy delays it by the "
        "interpreter's switch interval (5 ms) at a time, plus whatever the OS takes to run "
        "the worker. Under a silent partition (benchmarks/window.py), no read is served "
        "from a cache whose listener has not proven itself current within "
        "local_cache_max_lag (1 s); the first read refused got: "
        f"{section.get('partition_answers') or 'not measured'}.",
    ]
    return out


def faults(section: dict[str, Any]) -> list[str]:
    """The burst, CLIENT KILL and restart figures (benchmarks/faults.py)."""
    bursts = [
        [
            burst["connection"],
            str(burst["busy_processes"]),
            f"{burst['refused']} of {burst['requests']}",
            str(burst["reconnects"]) if burst["connection"] == "multiplexed" else "-",
            f"{burst['seconds']:.1f}",
        ]
        for burst in section["bursts"]
    ]
    kills = [
        [
            kill["connection"],
            str(kill["kills"]),
            f"{kill['reads_refused']} of {kill['reads']}",
            f"{kill['writes_refused']} of {kill['writes']}",
        ]
        for kill in section["kills"]
    ]

    def spread(values: list[float]) -> str:
        if not values:
            return "-"
        return f"{percentile(values, 0.5):.0f} / {max(values):.0f}"

    recoveries = [
        [
            recovery["connection"],
            f"{recovery['pause']:g} s",
            spread(recovery["served_again_ms"]),
            spread(recovery["first_request_ms"]),
            spread(recovery["refused_ms"]),
            str(recovery["refused_after_ping"]),
        ]
        for recovery in section["recoveries"]
    ]
    return [
        "## Faults: a burst, dropped connections, a restart",
        "",
        "Each case on a redis-server of its own, one worker's event loop, requests driven "
        "in-process (benchmarks/faults.py). A burst: concurrent logged-in reads of 100 users, "
        "all at once, with 0 or 2 processes spinning on the CPU meanwhile; reconnects: how "
        "often the shared connection was opened again.",
        "",
        *_table(["connection", "busy processes", "503s", "reconnects", "seconds"], bursts),
        "",
        "`CLIENT KILL TYPE normal` of the app's connections under load (24 devices, every third "
        "one writing), the next kill once every device went through a request begun after "
        "the last:",
        "",
        *_table(["connection", "kills", "reads refused", "writes refused"], kills),
        "",
        "Redis killed under load (24 devices, pausing between requests as shown) and started "
        "again: ms from Redis answering PING (polled every ms) to each device's first 200, "
        "how long a device's first request begun after PING took, how long each 503 of the "
        "outage took, and 503s to requests begun after PING (median / max).",
        "",
        *_table(
            [
                "connection",
                "pause",
                "served again, ms",
                "first request after PING, ms",
                "a 503 in the outage, ms",
                "503s after PING",
            ],
            recoveries,
        ),
    ]


def memory(usages: list[dict[str, Any]], cookies: dict[str, int]) -> list[str]:
    out = [
        "## Redis memory per session (one login)",
        "",
        "MEMORY USAGE (SAMPLES 0) of every key one login writes. The epoch and the index are "
        "per user, shared by all of that user's sessions.",
        "",
    ]
    rows = [[LABELS[u["variant"]], u["kind"], f"{u['bytes']}", f"{u['ttl_s']}"] for u in usages]
    out += _table(["variant", "key", "bytes", "TTL (s)"], rows)
    if cookies:
        out += [
            "",
            "Logged-in cookie value, bytes: "
            + ", ".join(f"{LABELS[k]} {v}" for k, v in cookies.items())
            + ".",
        ]
    return out


def scale(sizes: list[dict[str, Any]]) -> list[str]:
    out = [
        "## Invalidating one user among N sessions",
        "",
        "N sessions in session_middleware's layout (5 per user), written with pipelines under "
        "a prefix of the run's own, one size after the other; each repeat times every method in "
        "turn, a bare SET among them as the yardstick of the moment. The invalidated user "
        "logged in 5 times for real before "
        "each timed call. Median µs of one invalidation (IQR); round trips counted. DBSIZE "
        "counts every key on the shared Redis: SCAN walks all of them.",
        "",
    ]
    rows = []
    for size in sizes:
        for method, label in METHODS.items():
            values = size["times_us"][method]
            rows.append(
                [
                    f"{size['sessions']:,}",
                    f"{size['dbsize']:,}",
                    label,
                    _us(values),
                    _ratio(paired_ratios(values, size["times_us"]["reference"])),
                    f"{size['round_trips'][method]:g}",
                    f"{size['deleted'][method]}",
                ]
            )
    out += _table(
        ["sessions", "DBSIZE", "method", "µs (IQR)", "x bare SET", "round trips", "keys deleted"],
        rows,
    )
    largest = sizes[-1]
    n, users = largest["sessions"], largest["users"]
    out += [
        "",
        f"Memory at {n:,} sessions ({users:,} users). *MEMORY USAGE* is the mean over a sample "
        "of each component's keys, times its keys; *used_memory* is INFO's figure before and "
        "after the bulk write, which also catches the growth of Redis's own hash tables.",
        "",
    ]
    rows = []
    totals: dict[str, tuple[float, int]] = {}
    for name, delta in largest["memory"].items():
        count = largest["keys"].get(name, 0)
        usage = largest["sampled"].get(name, 0.0) * count
        totals[name] = (usage, delta)
        rows.append(
            [
                name,
                f"{count:,}",
                f"{largest['sampled'].get(name, 0.0):.0f}",
                f"{usage / n:.0f}",
                f"{delta / 1e6:.1f}",
                f"{delta / n:.0f}",
            ]
        )

    def combined(label: str, names: list[str]) -> list[str]:
        usage = sum(totals[name][0] for name in names if name in totals)
        delta = sum(totals[name][1] for name in names if name in totals)
        return [label, "", "", f"{usage / n:.0f}", f"{delta / 1e6:.1f}", f"{delta / n:.0f}"]

    records, epochs = "session records", "user epochs"
    rows.append(combined("ours without the index (records + epochs)", [records, epochs]))
    rows.append(
        combined("ours with the index", [records, epochs, "per-user index (ours: sorted set)"])
    )
    rows.append(
        combined(
            "the SET method (records + SETs)", [records, "per-user SET of ids (the SET method)"]
        )
    )
    out += _table(
        [
            "component",
            "keys",
            "MEMORY USAGE per key",
            "MEMORY USAGE per session",
            "used_memory MB",
            "used_memory per session",
        ],
        rows,
    )
    fills = ", ".join(f"{s['sessions']:,} in {s['fill_seconds']:.1f} s" for s in sizes)
    epochs_ok = all(s["rejected_after_epoch"] for s in sizes)
    out += [
        "",
        f"Bulk writes took: {fills}. After each epoch bump the user's real cookies were "
        + ("rejected (checked)." if epochs_ok else "**NOT all rejected**."),
    ]
    return out


def render(results: dict[str, Any]) -> str:
    mode = results["mode"]
    out = [
        "# session_middleware benchmarks",
        "",
        f"`{results['command']}` — {mode['name']} mode. {line(results['environment'])}.",
        "",
    ]
    if "load" in results:
        before, after = results["load"]
        out += [
            f"Took {results['seconds']:.0f} s. 1-minute load average {before:g} at the start and "
            f"{after:g} at the end, on {results['environment']['cpus']} CPUs (other work on the "
            "machine shows up in the spreads).",
            "",
        ]
    out += []
    for key, why in results.get("skipped", {}).items():
        out.append(f"- {LABELS[key]}: {why}")
    if results.get("skipped"):
        out.append("")
    out += ["## Targets", "", *targets(results), ""]
    if "inprocess" in results:
        out += [*inprocess(results["inprocess"]), ""]
        out += [*counts(results["inprocess"]), ""]
    if "instructions" in results:
        out += [*instructions(results["instructions"]), ""]
    if "endtoend" in results:
        out += [*endtoend(results["endtoend"], mode), ""]
    if "contention" in results:
        out += [*contention(results["contention"]), ""]
    if "memory" in results:
        out += [*memory(results["memory"], results.get("inprocess", {}).get("cookies", {})), ""]
        if "memory_cache" in results:
            out += [*memory_cache(results["memory_cache"]), ""]
    if results.get("window", {}).get("windows_us"):
        out += [*window(results["window"]), ""]
    if results.get("scale"):
        out += [*scale(results["scale"]), ""]
    if results.get("faults"):
        out += [*faults(results["faults"]), ""]
    return "\n".join(out)
