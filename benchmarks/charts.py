"""The results as PNG charts (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .scale import METHODS
from .scenarios import REQUESTS
from .stats import Summary, paired_ratios
from .variants import LABELS

COLORS = {
    "floor": "#9e9e9e",
    "starlette": "#8fb3d9",
    "starsessions": "#e39b5b",
    "ours-redis": "#2e7d32",
    "ours-redispy": "#a5d6a7",
    "ours-sql": "#7cb342",
    "ours-cache": "#00838f",
}


def _grouped(ax: Any, data: dict[str, dict[str, list[float]]], scenarios: list[str]) -> None:
    """Bars per scenario, one per variant; a bar far above the rest is cut at the top of
    the axis and labelled with its value, so the others stay readable."""
    variants = [key for key in LABELS if key in data]
    width = 0.8 / len(variants)
    bars: list[tuple[str, float, Summary]] = []
    for i, key in enumerate(variants):
        for j, scenario in enumerate(scenarios):
            values = data[key].get(scenario)
            if values:
                bars.append((key, j + (i - (len(variants) - 1) / 2) * width, Summary.of(values)))
    medians = sorted(s.median for _, _, s in bars)
    top = medians[-1] * 1.15
    if len(medians) > 1 and medians[-1] > 2.5 * medians[-2]:
        top = medians[-2] * 1.3
    for key in variants:
        mine = [(x, s) for k, x, s in bars if k == key]
        heights = [min(s.median, top) for _, s in mine]
        low = [max(min(s.median, top) - s.q1, 0) for _, s in mine]
        high = [max(min(s.q3, top) - min(s.median, top), 0) for _, s in mine]
        xs = [x for x, _ in mine]
        ax.bar(
            xs, heights, width, yerr=[low, high], capsize=2, label=LABELS[key], color=COLORS[key]
        )
        for (x, s), h in zip(mine, heights, strict=True):
            text = f"{s.median:.0f}" if s.median <= top else f"{s.median:.0f} (cut)"
            ax.annotate(
                text,
                (x, max(h, min(s.q3, top))),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 2),
                textcoords="offset points",
            )
    ax.set_ylim(0, top * 1.08)


def inprocess(section: dict[str, Any], path: Path) -> None:
    scenarios = [s.key for s in REQUESTS]
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    _grouped(ax, section["times"], scenarios)
    get = Summary.of(section["references"]["get"]).median
    ax.axhline(get, color="black", linestyle="--", linewidth=1)
    ax.axhline(1.3 * get, color="#c62828", linestyle=":", linewidth=1)
    ax.text(-0.45, get, f"bare redis.asyncio GET {get:.0f} µs", va="bottom", fontsize=8)
    ax.text(
        -0.45, 1.3 * get, "1.3x GET (the read's target)", va="bottom", fontsize=8, color="#c62828"
    )
    ax.set_xticks(range(len(scenarios)), [s.label for s in REQUESTS])
    ax.set_ylabel("µs per request (median, IQR bars)")
    ax.set_title("In-process cost per request (lower is better)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def endtoend(section: dict[str, Any], path: Path) -> None:
    scenarios = [s.key for s in REQUESTS]
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    _grouped(ax, section["rps"], scenarios)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend above the floor's bars
    ax.set_xticks(range(len(scenarios)), [s.label for s in REQUESTS])
    ax.set_ylabel("requests/s (median, IQR bars)")
    ax.set_title("End-to-end throughput, uvicorn 1 worker + wrk on loopback (higher is better)")
    ax.legend(fontsize=8, loc="upper right", ncols=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


SCALE_MARKERS = {"reference": ".", "epoch": "o", "epoch+delete": "s", "scan": "^", "set": "D"}
SCALE_COLORS = {
    "reference": "#9e9e9e",
    "epoch": "#2e7d32",
    "epoch+delete": "#7cb342",
    "scan": "#c62828",
    "set": "#e39b5b",
}


def scale(sizes: list[dict[str, Any]], path: Path) -> None:
    """Left: milliseconds per invalidation. Right: the same, divided by a bare SET timed
    beside it, which takes the machine's noise of the moment out."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), dpi=110)
    xs = [size["sessions"] for size in sizes]
    for method, label in METHODS.items():
        style = "--" if method == "reference" else "-"
        times = [size["times_us"][method] for size in sizes]
        medians = [Summary.of(values).median / 1000 for values in times]
        ratios = [
            Summary.of(paired_ratios(values, size["times_us"]["reference"])).median
            for values, size in zip(times, sizes, strict=True)
        ]
        for ax, ys, unit in ((left, medians, " ms"), (right, ratios, "x")):
            ax.plot(
                xs,
                ys,
                style,
                marker=SCALE_MARKERS[method],
                color=SCALE_COLORS[method],
                label=label,
            )
            ax.annotate(
                f"{ys[-1]:.2f}{unit}",
                (xs[-1], ys[-1]),
                fontsize=8,
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
            )
        if method == "scan":
            for x, y, size in zip(xs, medians, sizes, strict=True):
                left.annotate(
                    f"DBSIZE {size['dbsize']:,}",
                    (x, y),
                    fontsize=7,
                    xytext=(0, -12),
                    textcoords="offset points",
                    ha="center",
                    color=SCALE_COLORS[method],
                )
    left.set_ylabel("ms to invalidate one user (median)")
    left.set_title("Invalidating one user's sessions (lower is better)")
    right.set_ylabel("time / a bare SET timed beside it (median)")
    right.set_title("The same, relative to one bare SET (noise taken out)")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sessions written (SCAN walks every key on the server: DBSIZE)")
        ax.grid(alpha=0.3, which="both")
        ax.set_xlim(min(xs) / 2, max(xs) * 8)
    left.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def window(section: dict[str, Any], path: Path) -> None:
    """The invalidation window as cumulative shares: how many invalidations had every
    worker's copy dropped (and any one worker's) so many µs after the call returned."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    drops = [drop for per_round in section["drops_us"] for drop in per_round]
    for values, label, color in (
        (section["windows_us"], "the last worker drops its copy (the window)", "#00838f"),
        (drops, "any one worker drops its copy", "#80cbc4"),
    ):
        ordered = sorted(values)
        shares = [(i + 1) / len(ordered) for i in range(len(ordered))]
        ax.step(ordered, shares, where="post", label=label, color=color)
    ax.axvline(0, color="black", linewidth=1)
    ax.text(0, 0.97, " ainvalidate_user returned", fontsize=8, va="top")
    ax.set_xlabel("µs after ainvalidate_user returned (negative: dropped before)")
    ax.set_ylabel("share of invalidations")
    ax.set_title(
        f"local_cache invalidation window, {section['workers']} worker processes, "
        f"{len(section['windows_us'])} invalidations"
    )
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def render(results: dict[str, Any], directory: Path) -> list[str]:
    """Write the charts the results allow; their file names."""
    written = []
    if "inprocess" in results:
        inprocess(results["inprocess"], directory / "inprocess.png")
        written.append("inprocess.png")
    if results.get("endtoend", {}).get("rps"):
        endtoend(results["endtoend"], directory / "endtoend.png")
        written.append("endtoend.png")
    if results.get("scale"):
        scale(results["scale"], directory / "invalidation.png")
        written.append("invalidation.png")
    if results.get("window", {}).get("windows_us"):
        window(results["window"], directory / "window.png")
        written.append("window.png")
    return written
