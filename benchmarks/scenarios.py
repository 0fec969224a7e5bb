"""The scenarios, and beside them the targets they are judged by: one table.

A benchmark's name is ``part/scenario/variant[/qualifier]``; the targets name them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    key: str
    method: str
    path: str
    logged_in: bool  # the request carries a logged-in session cookie


ANONYMOUS = Scenario("anonymous", "GET", "/anonymous", False)  # the session is never touched
READ = Scenario("read", "GET", "/read", True)
WRITE = Scenario("write", "POST", "/write", True)  # a counter in the session
LOGIN = Scenario("login", "POST", "/login", False)  # a new session bound to a user
REQUESTS = (ANONYMOUS, READ, WRITE, LOGIN)
INVALIDATE = "invalidate"  # not a request: one call of config.ainvalidate_user(user_id)

# The variants with no session middleware: no login, they carry FLOOR_COOKIE.
NO_SESSION = ("floor", "floor-redis")
# The floor carries a cookie of a logged-in cookie's size, so requests are the same size.
FLOOR_COOKIE = "session=" + "x" * 120

# Session sizes (keys, bytes of JSON; 0: tiny values) and "many": more sessions than the
# decoded-record memo holds (512), read in turn.
SIZES = {"1key": (1, 0), "10keys": (10, 0), "100keys": (100, 0), "10KB": (10, 10_000)}
SIZES["100KB"] = (10, 100_000)
# Over 2 KB with more fields than record layouts are remembered for: the layout is found on
# every read (records.LAYOUT_FIELDS).
SIZES["300keys"] = (300, 0)
MANY_SESSIONS = 600
CONTENTION_LEVELS = (1, 2, 4, 8, 32)  # wrk connections writing one session
# How the Redis-cost phases' operations come to Redis (redis_cost.py): the suffix of a
# phase's name, and of the floor it is compared with.
BATCHED_SUFFIX, IN_FLIGHT_SUFFIX = "-batched", "-in-flight"
LOOPS = ("uvloop", "asyncio")
WORKERS = (1, 2)
E2E = "uvloop/1w"  # the qualifier of the main end-to-end table
CONNECTIONS = 32  # wrk's, end to end
# The write with and without local_cache at fewer connections too (``.../uvloop/1w/4c``):
# with fewer requests for the multiplexed connection to send in one write, a round trip
# costs each request more, and a cache hit saves more.
FEW_CONNECTIONS = (1, 4)


@dataclass(frozen=True)
class Target:
    """`kind`: speed (median over rounds of b's time ÷ a's, at least `bound`), cost (a ÷ b,
    at most `bound`), at_most (a's median, in its unit), or count (a counted fact, equal)."""

    text: str
    kind: str
    a: str
    b: str = ""
    bound: float = 1.0


def e2e_name(
    scenario: str, variant: str, qualifier: str = E2E, connections: int = CONNECTIONS
) -> str:
    """An end-to-end cell's name (``e2e/read/ours-redis/uvloop/1w``; ``.../4c`` at other
    than CONNECTIONS connections)."""
    name = f"e2e/{scenario}/{variant}/{qualifier}"
    return name if connections == CONNECTIONS else f"{name}/{connections}c"


TARGETS = (
    Target("logged-in read: 1 round trip", "count", "counts/read/ours-redis/round_trips", "", 1),
    Target("logged-in read: 2 commands", "count", "counts/read/ours-redis/commands", "", 2),
    Target("logged-in read: no write", "count", "counts/read/ours-redis/writes", "", 0),
    Target("logged-in write: 2 round trips", "count", "counts/write/ours-redis/round_trips", "", 2),
    *(
        Target(
            f"logged-in read end to end ≥ 0.9x Starlette cookie sessions ({loop})",
            "speed",
            e2e_name("read", "ours-redis", f"{loop}/1w"),
            e2e_name("read", "starlette", f"{loop}/1w"),
            0.9,
        )
        for loop in LOOPS
    ),
    *(
        Target(
            f"read with local_cache end to end ≥ 1.0x cookie sessions ({loop})",
            "speed",
            e2e_name("read", "ours-cache", f"{loop}/1w"),
            e2e_name("read", "starlette", f"{loop}/1w"),
            1.0,
        )
        for loop in LOOPS
    ),
    Target(
        "write with local_cache ≥ 1.0x the write without it",
        "speed",
        e2e_name("write", "ours-cache"),
        e2e_name("write", "ours-redis"),
    ),
    Target(
        f"{CONTENTION_LEVELS[-1]} connections writing one session: local_cache ≥ 1.0x without it",
        "speed",
        f"contention/own-{CONTENTION_LEVELS[-1]}/ours-cache",
        f"contention/own-{CONTENTION_LEVELS[-1]}/ours-redis",
    ),
    Target(
        "logged-in write end to end ≥ 0.7x cookie sessions",
        "speed",
        e2e_name("write", "ours-redis"),
        e2e_name("write", "starlette"),
        0.7,
    ),
    Target(
        "logged-in read end to end ≥ 1.5x starsessions",
        "speed",
        e2e_name("read", "ours-redis"),
        e2e_name("read", "starsessions"),
        1.5,
    ),
    *(
        Target(
            f"{level} connections writing one session (a key each) ≥ 0.9x starsessions",
            "speed",
            f"contention/own-{level}/ours-redis",
            f"contention/own-{level}/starsessions",
            0.9,
        )
        for level in CONTENTION_LEVELS
    ),
    Target(
        "logged-in write, instructions ≤ starsessions'",
        "cost",
        "instructions/write/ours-redis",
        "instructions/write/starsessions",
    ),
    Target(
        "read of a 100 KB session ≤ 2x a 1-key read (instructions)",
        "cost",
        "instructions/read-size/100KB",
        "instructions/read-size/1key",
        2.0,
    ),
    Target(
        "read missing the decoded-record memo ≤ 1.1x a hit (instructions)",
        "cost",
        "instructions/read-size/many",
        "instructions/read-size/1key",
        1.1,
    ),
    # On a busy Redis, as where its CPU is what sizes it: the reads of 32 requests in flight,
    # which the multiplexed connection sends as they come (redis_cost.py). Alone, each read
    # wakes an idle Redis and costs it 2-3 times as much (reported beside it).
    Target(
        "Redis CPU per logged-in read ≤ 2 µs (32 requests in flight)",
        "at_most",
        f"redis-cpu/read{IN_FLIGHT_SUFFIX}",
        "",
        2e-6,
    ),
    # The floor of any request served with one Redis round trip through redis-py: the app
    # with no session middleware doing one bare redis.asyncio GET (variant floor-redis).
    Target(
        "logged-in read ≤ 1.2x a bare redis.asyncio GET served (instructions, in-process)",
        "cost",
        "instructions/read/ours-redis",
        "instructions/read/floor-redis",
        1.2,
    ),
    Target(
        "logged-in read ≤ 1.2x a bare redis.asyncio GET served (instructions, uvicorn)",
        "cost",
        "instructions/served-read/ours-redis",
        "instructions/served-read/floor-redis",
        1.2,
    ),
    Target(
        "invalidate_user among the most sessions ≤ 1.5x its cost among 10",
        "cost",
        "scale/epoch/largest",
        "scale/epoch/10",
        1.5,
    ),
)
