"""The report: the machine, the targets (scenarios.TARGETS) judged, then every figure, as
Markdown. Medians and ratios come from the pyperf benchmarks, ratios round by round."""

from __future__ import annotations

import math
import statistics

from .results import Results
from .scenarios import (
    BATCHED_SUFFIX,
    CONNECTIONS,
    E2E,
    FEW_CONNECTIONS,
    IN_FLIGHT_SUFFIX,
    TARGETS,
    Target,
    e2e_name,
)
from .variants import ORDER


def _largest(results: Results, name: str) -> str:
    if not name.endswith("/largest"):
        return name
    stem = name.rsplit("/", 1)[0]
    sizes = [int(n.rsplit("/", 1)[1]) for n in results.names(stem + "/")]
    return f"{stem}/{max(sizes)}" if sizes else name


def judge(results: Results, target: Target) -> tuple[str, str]:
    """(what was measured, verdict) of one target; verdict '' when it was not measured."""
    a, b = _largest(results, target.a), _largest(results, target.b)
    if target.kind == "count":
        if a not in results.facts:
            return "not measured", ""
        value = results.facts[a]
        sequence = results.facts.get(a.rsplit("/", 1)[0] + "/sequence", "")
        return f"{value:g} ({sequence})", _verdict(value == target.bound)
    if a not in results.runs or (b and b not in results.runs):
        return "not measured", ""
    if target.kind == "at_most":
        value, rounds = results.median(a), results.rounds(a)
        spread = f" ({min(rounds) * 1e6:.2f}-{max(rounds) * 1e6:.2f}, {len(rounds)} rounds)"
        return f"{value * 1e6:.2f} µs{spread if len(rounds) > 1 else ''}", _verdict(
            value <= target.bound
        )
    if target.kind == "speed":
        median, low, high = results.ratio(b, a)  # time per request: b ÷ a is a's speed-up
    else:
        median, low, high = results.ratio(a, b)
    spread = f" ({low:.2f}-{high:.2f}, {len(results.rounds(a))} rounds)" if low != high else ""
    ok = median >= target.bound if target.kind == "speed" else median <= target.bound
    return f"{median:.2f}x{spread}", _verdict(ok)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def _value(results: Results, name: str) -> str:
    unit, rounds = results.unit(name), results.rounds(name)
    median = statistics.median(rounds)
    if unit == "integer":
        return f"{median:,.0f}"
    if unit == "byte":
        return f"{median:,.0f} B"
    if median >= 0.1:
        return f"{median:,.2f} s"
    digits = 2 if median < 1e-5 else 1 if median < 1e-4 else 0  # µs under 10: 2 decimals
    spread = f" ({min(rounds) * 1e6:,.{digits}f}-{max(rounds) * 1e6:,.{digits}f})"
    return f"{median * 1e6:,.{max(digits, 1)}f} µs" + (spread if len(rounds) > 1 else "")


def _matrix(results: Results, part: str, qualifier: str, rate: bool) -> list[str]:
    """Variants x scenarios of one part: the median (requests/s or µs) and ÷ Starlette's."""
    names = [n for n in results.names(part + "/") if n.endswith(qualifier) and n.count("/") > 1]
    scenarios = list(dict.fromkeys(n.split("/")[1] for n in names))
    variants = [v for v in ORDER if any(n.split("/")[2] == v for n in names)]
    rows = []
    for variant in variants:
        row = [variant]
        for scenario in scenarios:
            name = f"{part}/{scenario}/{variant}{qualifier}"
            if name not in results.runs:
                row.append("")
                continue
            median = results.median(name)
            cell = f"{1 / median:,.0f}/s" if rate else f"{median * 1e6:,.0f} µs"
            peer = f"{part}/{scenario}/starlette{qualifier}"
            if peer in results.runs and variant != "starlette":
                ratio = results.ratio(peer, name)[0] if rate else results.ratio(name, peer)[0]
                cell += f" ({ratio:.2f}x)"
            row.append(cell)
        rows.append(row)
    return _table(["variant", *scenarios], rows) if rows else []


def _redis_cpu(results: Results) -> list[str]:
    """Redis CPU per operation, and ÷ the floor (a bare GET of a string as long as the
    record, sent the same way: one at a time, batched, or from requests in flight) round by
    round."""
    names = results.names("redis-cpu/")
    if not names:
        return []
    rows = []
    for name in names:
        floor = "redis-cpu/floor-get" + next(
            (way for way in (BATCHED_SUFFIX, IN_FLIGHT_SUFFIX) if name.endswith(way)), ""
        )
        ratio = ""
        if floor in results.runs and name != floor:
            median, low, high = results.ratio(name, floor)
            ratio = f"{median:.1f}x ({low:.1f}-{high:.1f})"
        rows.append([name, _value(results, name), ratio])
    title = "Redis CPU per operation (INFO commandstats, top-level commands)"
    return [f"## {title}", "", *_table(["benchmark", "median", "÷ floor GET"], rows)]


def _cached_write_by_connections(results: Results) -> list[str]:
    """The write with local_cache ÷ without it, at each number of wrk connections."""
    rows = []
    for connections in (*FEW_CONNECTIONS, CONNECTIONS):
        cached, plain = (
            e2e_name("write", key, connections=connections) for key in ("ours-cache", "ours-redis")
        )
        if cached not in results.runs or plain not in results.runs:
            continue
        median, low, high = results.ratio(plain, cached)
        cpu = [f"e2e-cpu/{name[4:]}" for name in (cached, plain)]
        spent = [f"{results.median(n) * 1e6:,.0f} µs" if n in results.runs else "" for n in cpu]
        rates = [f"{1 / results.median(name):,.0f}/s" for name in (cached, plain)]
        rows.append([str(connections), *rates, f"{median:.2f}x ({low:.2f}-{high:.2f})", *spent])
    if not rows:
        return []
    title = f"## The write with and without local_cache, by connections (uvicorn {E2E})"
    header = ["connections", "with", "without", "with ÷ without", "CPU with", "CPU without"]
    return [title, "", *_table(header, rows)]


def render(results: Results) -> str:
    meta, facts = results.metadata, results.facts
    out = [
        "# Benchmark results",
        "",
        f"`{facts.get('command', 'python -m benchmarks')}`; {meta.get('cpu_count')} CPUs "
        f"({meta.get('cpu_model_name')}), {meta.get('platform')}, Python "
        f"{meta.get('python_version')}, Redis {meta.get('version_redis_server')}, redis-py "
        f"{meta.get('version_redis')} (hiredis {meta.get('version_hiredis')}), starlette "
        f"{meta.get('version_starlette')}, starsessions {meta.get('version_starsessions')}, "
        f"uvicorn {meta.get('version_uvicorn')}, uvloop {meta.get('version_uvloop')}; load "
        f"average {facts.get('load')}; {facts.get('seconds')} s. One run: compare ratios "
        "within it (each the median over interleaved rounds, min-max in brackets).",
        "",
        "## Targets",
        "",
    ]
    rows = [[t.text, *judge(results, t)] for t in TARGETS]
    out += _table(["target", "measured", ""], rows)
    out += ["## In-process (µs per request; ÷ Starlette's cookie sessions)", ""]
    out += _matrix(results, "inprocess", "", rate=False)
    refs = results.names("inprocess/ref-")
    out += _table(["bare command", "µs"], [[n.split("/")[1], _value(results, n)] for n in refs])
    counts = [
        n.rsplit("/", 1)[0] for n in facts if n.startswith("counts/") and n.endswith("/writes")
    ]
    out += ["## Redis commands per request (counted on the client)", ""]
    out += _table(
        ["scenario/variant", "round trips", "commands", "writes", "commands of one"],
        [
            [
                n[7:],
                *(f"{facts[f'{n}/{w}']:g}" for w in ("round_trips", "commands", "writes")),
                facts[f"{n}/sequence"],
            ]
            for n in counts
        ],
    )
    collected = [n[3:-5] for n in facts if n.startswith("gc/") and n.endswith("/gen0")]
    if collected:
        out += [
            "## Garbage collections per request, 32 requests in flight (in-process)",
            "",
            "Python's collections by generation (0: young objects; 2: a full collection), "
            "per request, with 32 requests of as many sessions run at once; and the "
            "container objects a request holds at the peak of such a burst (what the "
            "young generation's threshold counts: 700 before Python 3.13, 2,000 since).",
            "",
        ]
        out += _table(
            ["scenario/variant", "young", "middle", "full", "objects held a request"],
            [
                [
                    n,
                    *(f"{facts[f'gc/{n}/gen{g}']:.4f}" for g in range(3)),
                    f"{facts[f'gc/{n}/held']:.1f}" if f"gc/{n}/held" in facts else "",
                ]
                for n in collected
            ],
        )
    for qualifier in ("uvloop/1w", "asyncio/1w", "uvloop/2w"):
        matrix = _matrix(results, "e2e", "/" + qualifier, rate=True)
        if matrix:
            out += [f"## End to end, uvicorn {qualifier} (requests/s; ÷ Starlette's)", "", *matrix]
        cpu = _matrix(results, "e2e-cpu", "/" + qualifier, rate=False)
        if cpu:
            title = f"## The server's CPU per request, uvicorn {qualifier} (µs; ÷ Starlette's)"
            out += [title, "", *cpu]
    out += _cached_write_by_connections(results)
    contention = results.names("contention/")
    if contention:
        out += ["## Connections writing one session", ""]
        out += _table(
            ["cell", "requests/s", "answered", "failed", "increments kept"],
            [
                [
                    n[11:],
                    f"{1 / results.median(n):,.0f}",
                    f"{facts[n]['requests']:,}",
                    f"{facts[n]['failed']:,}",
                    f"{facts[n]['kept'] / max(facts[n]['requests'], 1):.0%}",
                ]
                for n in contention
            ],
        )
    out += _redis_cpu(results)
    for part, title in (
        ("instructions/", "CPU instructions per request (callgrind)"),
        ("redis-cpu-command/", "Redis CPU per call of each top-level command (commandstats)"),
        ("redis-process-cpu/", "Redis process CPU per operation (INFO cpu, network included)"),
        ("memory/", "Redis memory (MEMORY USAGE)"),
        ("scale/", "Invalidating one user among many sessions"),
    ):
        if results.names(part):
            out += [f"## {title}", ""]
            out += _table(
                ["benchmark", "median"], [[n, _value(results, n)] for n in results.names(part)]
            )
    if "window" in facts:
        out += ["## local_cache: last copy dropped after invalidate_user returned (µs)", ""]
        rows = []
        for key, label in (
            ("windows_us", "idle workers"),
            ("busy_windows_us", "handlers burning 20 ms of CPU"),
            ("partition_windows_us", "silent partition: the last stale read"),
        ):
            values = sorted(facts["window"][key])
            p99 = values[max(math.ceil(0.99 * len(values)) - 1, 0)]
            rows.append(
                [
                    label,
                    str(len(values)),
                    *(f"{v:,.0f}" for v in (values[len(values) // 2], p99, values[-1])),
                ]
            )
        out += _table(["situation", "rounds", "median", "p99", "max"], rows)
    if "faults" in facts:
        out += ["## Faults (503s)", ""]
        rows = [
            [
                f"burst of {b['requests']:,} reads, {b['busy_processes']} busy processes",
                b["connection"],
                f"{b['refused']:,} refused, {b['reconnects']} reconnects, {b['seconds']:.1f} s",
            ]
            for b in facts["faults"]["bursts"]
        ]
        rows += [
            [
                f"{k['kills']} CLIENT KILLs under load",
                k["connection"],
                f"reads {k['reads_refused']}/{k['reads']}, "
                f"writes {k['writes_refused']}/{k['writes']} refused",
            ]
            for k in facts["faults"]["kills"]
        ]
        rows += [
            [
                f"Redis down {r['outage_s']} s, devices pausing {r['pause']} s",
                r["connection"],
                f"every device served {max(r['served_again_ms']):.0f} ms after PING at most; "
                f"{r['refused_after_ping']} refused after PING",
            ]
            for r in facts["faults"]["recoveries"]
        ]
        out += _table(["case", "connection", "outcome"], rows)
    for key in ("instructions/skipped", "e2e/skipped"):
        if key in facts:
            out += [f"{key}: {facts[key]}", ""]
    return "\n".join(out)
