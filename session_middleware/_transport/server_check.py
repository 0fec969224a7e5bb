"""What `session-middleware check` finds wrong in a Redis server's settings.

Each finding says what breaks and for whom. A *problem* (exit code 1) can sign users out,
or keep a session alive that should have ended; a *warning* is worth knowing but safe as
it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .clients import REDIS_ERRORS

MIN_REDIS_VERSION = (6, 2)
SAFE_POLICY = "noeviction"
SETTINGS = (
    "maxmemory*",
    "protected-mode",
    "requirepass",
    "bind",
    "appendonly",
    "save",
    "min-replicas-*",
)


@dataclass
class Findings:
    """What inspecting a Redis server found: problems that make it unfit, and warnings."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def inspect_server(client: Any, version: str) -> Findings:
    """The problems and warnings of the Redis behind `client` (a sync redis-py client)."""
    found = Findings()
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_REDIS_VERSION:
        found.problems.append(
            f"Redis {version} is too old: 6.2 or newer is needed (SET PXAT, ZRANGE BYSCORE)"
        )
    try:
        settings: dict[str, str] = {}
        for pattern in SETTINGS:
            settings.update(client.config_get(pattern))
    except REDIS_ERRORS:
        # CONFIG is often disabled on a managed Redis: say what could not be checked.
        found.warnings.append(
            "CONFIG GET is not allowed here, so persistence and the eviction policy were "
            "not checked: make sure maxmemory-policy is noeviction and appendonly is yes"
        )
        return found
    _eviction(settings, found)
    _persistence(settings, found)
    _exposure(settings, found)
    _min_replicas(client, settings, found)
    return found


def _eviction(settings: dict[str, str], found: Findings) -> None:
    policy = settings.get("maxmemory-policy", SAFE_POLICY)
    if policy == SAFE_POLICY:
        return
    # Every key this package writes carries a TTL, so the volatile-* policies can evict
    # them exactly as the allkeys-* policies do.
    what = (
        f"maxmemory-policy is {policy}: under memory pressure Redis may evict any of our "
        "keys (each has a TTL, so volatile-* policies reach them too): a session "
        "(its user is signed out), an epoch (every session of its user is rejected) or a "
        "user's index (their sessions live on but can no longer be listed or revoked); "
        "use noeviction, with which a full Redis refuses writes (a 503) instead"
    )
    if settings.get("maxmemory", "0") == "0":
        found.warnings.append(f"{what} (maxmemory is 0, so nothing is evicted yet)")
    else:
        found.problems.append(what)


def _persistence(settings: dict[str, str], found: Findings) -> None:
    aof = settings.get("appendonly", "no") == "yes"
    snapshots = bool(settings.get("save", "").strip())
    if not aof and not snapshots:
        found.problems.append(
            'Redis keeps nothing on disk (appendonly no, save ""): a restart signs every '
            "user out; set appendonly yes"
        )
    elif not aof:
        found.warnings.append(
            "Redis persists by snapshots only (appendonly no): a restart goes back to the "
            "last snapshot, which can bring back sessions ended since (a logout, a revoke, "
            "an invalidate_user); set appendonly yes"
        )


def _exposure(settings: dict[str, str], found: Findings) -> None:
    loopback = all(
        host.lstrip("-") in ("127.0.0.1", "::1", "localhost")
        for host in settings.get("bind", "").split()
    )
    if not settings.get("requirepass") and not loopback and settings.get("protected-mode") == "no":
        found.problems.append("Redis accepts connections beyond loopback with no password")


def _min_replicas(client: Any, settings: dict[str, str], found: Findings) -> None:
    """A master with replicas should refuse writes it cannot replicate (see
    docs/deployment.md, "What survives a failover")."""
    try:
        info = client.info("replication")
    except REDIS_ERRORS:
        return
    if info.get("role") != "master":
        return
    connected = int(info.get("connected_slaves", 0))
    least = int(settings.get("min-replicas-to-write", "0") or 0)
    lag = settings.get("min-replicas-max-lag", "10")
    if least > connected:
        found.problems.append(
            f"min-replicas-to-write is {least} but {connected} replica(s) are connected: "
            "Redis refuses every write, so every sign-in and session change gets the 503"
        )
    elif connected and not least:
        found.warnings.append(
            f"this master has {connected} replica(s) and min-replicas-to-write 0: at a "
            "Sentinel failover, writes it accepts between the promotion and the moment "
            "clients hear of it are lost (sessions written, logouts, invalidations); set "
            f"min-replicas-to-write {connected} (min-replicas-max-lag {lag})"
        )
    elif least < connected:
        found.warnings.append(
            f"min-replicas-to-write is {least} with {connected} replicas: at a failover "
            "the old master keeps a replica until Sentinel moves it, and accepts writes "
            f"that are then lost; min-replicas-to-write {connected} closes that window, "
            "at the cost of refusing writes while any replica is away"
        )


def expiry_notifications(client: Any) -> str:
    """Whether Redis publishes the expiries that ``listen_for_expiry()`` reports: 'on',
    'off', or 'unknown' when CONFIG GET is not allowed."""
    try:
        flags = str(client.config_get("notify-keyspace-events").get("notify-keyspace-events", ""))
    except REDIS_ERRORS:
        return "unknown"
    expired = "x" in flags or "A" in flags
    return "on" if expired and ("K" in flags or "E" in flags) else "off"
