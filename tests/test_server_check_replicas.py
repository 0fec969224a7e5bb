"""`session-middleware check` on a master with replicas: min-replicas-to-write, the
server's half of a failover (session_middleware/_transport/server_check.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from session_middleware._transport.server_check import Findings, inspect_server

from .support.redis_servers import HOST, Servers, standalone, wait_until


@pytest.fixture(scope="module")
def master() -> Iterator[redis.Redis]:
    group = Servers("check-replicas")
    try:
        server = group.add("master", ["--appendonly", "yes"]).start()
        group.add("replica", ["--replicaof", HOST, str(server.port)]).start()
        with server.client(decode_responses=True) as client:
            wait_until(
                lambda: client.info("replication")["connected_slaves"] == 1, 10.0, "the replica"
            )
            yield client
    finally:
        group.stop()


def _findings(client: redis.Redis, least: int) -> Findings:
    client.config_set("min-replicas-to-write", least)
    version = str(client.info("server")["redis_version"])
    return inspect_server(client, version)


def _about_replicas(texts: list[str]) -> list[str]:
    return [text for text in texts if "min-replicas-to-write" in text]


def test_a_master_with_a_replica_and_no_min_replicas_is_warned(master: redis.Redis) -> None:
    found = _findings(master, 0)
    (warning,) = _about_replicas(found.warnings)
    assert "1 replica(s) and min-replicas-to-write 0" in warning and "lost" in warning
    assert _about_replicas(found.problems) == []


def test_min_replicas_matching_the_replicas_is_quiet(master: redis.Redis) -> None:
    found = _findings(master, 1)
    assert _about_replicas(found.warnings + found.problems) == []


def test_min_replicas_above_the_replicas_connected_is_a_problem(master: redis.Redis) -> None:
    found = _findings(master, 2)
    (problem,) = _about_replicas(found.problems)
    assert "refuses every write" in problem
    with pytest.raises(redis.ResponseError, match="NOREPLICAS"):  # and it does
        master.set("sm-check-write", "1")
    master.config_set("min-replicas-to-write", 0)


def test_a_single_redis_is_not_asked_for_replicas() -> None:
    group, server = standalone()
    try:
        with server.client(decode_responses=True) as client:
            found = _findings(client, 0)
    finally:
        group.stop()
    assert _about_replicas(found.warnings + found.problems) == []
