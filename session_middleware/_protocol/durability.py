"""What a durable write asks for, with no I/O: the runners carry it out through
_transport/replication.py."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Replication:
    """How a write is made durable: `wanted` replicas (0: not waited for), each attempt
    waiting at most `timeout_ms` for them, attempts made for at most `deadline` seconds;
    `history_key` names the key on the master recording the replication history seen
    with a replica (None: none kept; on a cluster it would live on one master only), and
    `follows_failover` says whether a failover can move the master (Sentinel, Cluster),
    so that retrying a timeout can help (see _transport/replication.py)."""

    wanted: int
    timeout_ms: int
    deadline: float
    history_key: str | None = None
    follows_failover: bool = True
