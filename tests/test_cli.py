"""The operator's command line, run as a real process against the real Redis."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from session_middleware import SessionConfig

from .apps import wsgi_app
from .support import REDIS_URL, SECRET


def cli(prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"REDIS_URL": REDIS_URL, "SESSION_KEY_PREFIX": prefix, "SESSION_SECRET_KEY": SECRET}
    return subprocess.run(
        [sys.executable, "-m", "session_middleware", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, "PATH": "/usr/bin:/bin"},
        check=False,
    )


@pytest.fixture
def logged_in(config: SessionConfig) -> list[httpx.Client]:
    transport = httpx.WSGITransport(app=config(wsgi_app))
    clients = []
    for agent in ("Phone", "Laptop"):
        client = httpx.Client(
            transport=transport, base_url="http://t", headers={"user-agent": agent}
        )
        client.get("/login?user=alice")
        clients.append(client)
    return clients


def test_sessions_lists_a_users_sessions(key_prefix: str, logged_in: list[httpx.Client]) -> None:
    listed = cli(key_prefix, "--json", "sessions", "alice")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted(row["user_agent"] for row in rows) == ["Laptop", "Phone"]
    table = cli(key_prefix, "sessions", "alice")
    assert table.stdout.splitlines()[0].split()[:2] == ["HANDLE", "CREATED"]
    assert len(table.stdout.splitlines()) == 3
    assert cli(key_prefix, "sessions", "nobody").stdout.startswith("no active sessions")


def test_revoke_ends_one_session_and_refuses_foreign_handles(
    key_prefix: str, config: SessionConfig, logged_in: list[httpx.Client]
) -> None:
    handle = config.list_sessions("alice")[0].handle
    assert cli(key_prefix, "revoke", "bob", handle).returncode == 1
    done = cli(key_prefix, "--json", "revoke", "alice", handle)
    assert done.returncode == 0 and json.loads(done.stdout) == {"revoked": True}
    assert len(config.list_sessions("alice")) == 1


def test_invalidate_rejects_every_session(
    key_prefix: str, config: SessionConfig, logged_in: list[httpx.Client]
) -> None:
    assert cli(key_prefix, "invalidate", "alice", "--delete").returncode == 0
    assert config.list_sessions("alice") == []
    for client in logged_in:
        assert client.get("/read").json()["user"] is None


def test_check_reports_version_latency_and_key_counts(
    key_prefix: str, logged_in: list[httpx.Client]
) -> None:
    checked = cli(key_prefix, "--json", "check")
    report = json.loads(checked.stdout)
    assert report["keys"] == {"sessions": 2, "epochs": 1, "indexes": 1}
    assert report["redis_version"] and report["ping_ms_median"] > 0
    assert checked.returncode == (1 if report["problems"] else 0)


def test_an_unreachable_redis_is_one_line_and_exit_3(key_prefix: str) -> None:
    down = subprocess.run(
        [
            sys.executable,
            "-m",
            "session_middleware",
            "--redis-url",
            "redis://127.0.0.1:1/0",
            "check",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert down.returncode == 3
    assert len(down.stderr.strip().splitlines()) == 1 and "Traceback" not in down.stderr


def test_missing_secret_is_a_usage_error(key_prefix: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "session_middleware", "sessions", "alice"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2 and "secret key" in result.stderr
