"""The operator's command line, run as a real process against the real Redis."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from session_middleware import SessionConfig

from .support import OTHER_SECRET, REDIS_URL, SECRET
from .support.apps import wsgi_app
from .support.redis_servers import RedisServer, Servers, standalone

SCRIPT = str(Path(sys.executable).with_name("session-middleware"))  # the installed command


def run(
    *command: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        timeout=30,
        env={**(env or {}), "PATH": "/usr/bin:/bin"},
        cwd=cwd,
        check=False,
    )


def cli(prefix: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"REDIS_URL": REDIS_URL, "SESSION_KEY_PREFIX": prefix, "SESSION_SECRET_KEY": SECRET}
    environ.update(env)
    return run(sys.executable, "-m", "session_middleware", *args, env=environ)


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    return line


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
    result = run(sys.executable, "-m", "session_middleware", "sessions", "alice")
    assert "secret key" in one_line_error(result, 2)


# -- where the secret key comes from ----------------------------------------------------------


def listed_agents(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return sorted(row["user_agent"] for row in json.loads(result.stdout))


def test_secret_key_as_the_quickstarts_export_it(
    key_prefix: str, logged_in: list[httpx.Client]
) -> None:
    only_secret_key = cli(
        key_prefix, "--json", "sessions", "alice", SESSION_SECRET_KEY="", SECRET_KEY=SECRET
    )
    assert listed_agents(only_secret_key) == ["Laptop", "Phone"]
    # SESSION_SECRET_KEY, the more specific name, comes first.
    both = cli(key_prefix, "--json", "sessions", "alice", SECRET_KEY=OTHER_SECRET)
    assert listed_agents(both) == ["Laptop", "Phone"]
    wrong_first = cli(
        key_prefix,
        "--json",
        "sessions",
        "alice",
        SESSION_SECRET_KEY=OTHER_SECRET,
        SECRET_KEY=SECRET,
    )
    # Under the wrong key nothing is found: said so, and exit 1.
    assert wrong_first.returncode == 1 and json.loads(wrong_first.stdout) == []
    assert "nothing found for user 'alice'" in wrong_first.stderr


def test_secret_key_from_a_file_and_a_warning_for_one_on_the_command_line(
    key_prefix: str, logged_in: list[httpx.Client], tmp_path: Path
) -> None:
    key_file = tmp_path / "secret"
    key_file.write_text(f"{SECRET}\n{OTHER_SECRET}\n")
    from_file = cli(
        key_prefix, "--secret-key-file", str(key_file), "--json", "sessions", "alice",
        SESSION_SECRET_KEY=OTHER_SECRET,
    )  # fmt: skip
    assert listed_agents(from_file) == ["Laptop", "Phone"]
    assert from_file.stderr == ""
    visible = cli(key_prefix, "--secret-key", SECRET, "--json", "sessions", "alice")
    assert listed_agents(visible) == ["Laptop", "Phone"]
    assert "warning: --secret-key is visible" in visible.stderr and SECRET not in visible.stderr
    missing = cli(key_prefix, "--secret-key-file", str(tmp_path / "nope"), "sessions", "alice")
    assert "--secret-key-file" in one_line_error(missing, 2)


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://admin:hunter2-pw@127.0.0.1:notaport",
        "redis+sentinel://:hunter2-pw@127.0.0.1:1/",
        "redis://admin:hunter2-pw@127.0.0.1:notaport/0",
    ],
)
def test_no_message_shows_a_password_from_a_redis_url(key_prefix: str, url: str) -> None:
    from_environment = cli(key_prefix, "check", REDIS_URL=url)
    assert "hunter2" not in one_line_error(from_environment, 2)
    given = cli(key_prefix, "--redis-url", url, "check")
    assert given.returncode == 2 and "hunter2" not in given.stderr + given.stdout
    assert "warning: the password in --redis-url is visible" in given.stderr


def test_the_password_is_masked_where_the_url_is_quoted(key_prefix: str) -> None:
    url = "redis+cluster://admin:hunter2-pw@127.0.0.1:notaport"
    line = one_line_error(cli(key_prefix, "check", REDIS_URL=url), 2)
    assert "admin:***@127.0.0.1" in line


# -- --config and user ids ----------------------------------------------------------------------


def write_app(directory: Path, settings: str) -> None:
    package = directory / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(
        f"from session_middleware import SQLEpochs, sessions\n\nconfig = sessions({settings})\n"
    )


def test_config_is_imported_from_the_current_directory(
    key_prefix: str, logged_in: list[httpx.Client], tmp_path: Path
) -> None:
    write_app(
        tmp_path, f"secret_key={SECRET!r}, redis_url={REDIS_URL!r}, key_prefix={key_prefix!r}"
    )
    listed = run(
        SCRIPT, "--config", "myapp.main:config", "--json", "sessions", "alice", cwd=tmp_path
    )
    assert listed_agents(listed) == ["Laptop", "Phone"]
    elsewhere = run(SCRIPT, "--config", "myapp.main:config", "sessions", "alice")
    assert "cannot import myapp.main:config" in one_line_error(elsewhere, 2)


def test_an_integer_id_without_int_ids_is_one_line_and_exit_2(
    key_prefix: str, tmp_path: Path
) -> None:
    database = tmp_path / "users.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, session_epoch VARCHAR(64))")
        connection.execute("INSERT INTO users VALUES (42, NULL)")
    epochs = f"SQLEpochs('sqlite:///{database}', table='users', user_column='id', "
    epochs += "epoch_column='session_epoch')"
    write_app(
        tmp_path,
        f"secret_key={SECRET!r}, redis_url={REDIS_URL!r}, key_prefix={key_prefix!r}, "
        f"epochs={epochs}",
    )
    config = ["--config", "myapp.main:config"]
    text_id = run(SCRIPT, *config, "invalidate", "42", cwd=tmp_path)
    assert "--int-ids" in one_line_error(text_id, 2)
    integer_id = run(SCRIPT, *config, "--int-ids", "invalidate", "42", cwd=tmp_path)
    assert integer_id.returncode == 0, integer_id.stderr
    with sqlite3.connect(database) as connection:
        (epoch,) = connection.execute("SELECT session_epoch FROM users").fetchone()
    assert epoch  # bumped where the epoch lives


# -- check: persistence, eviction ---------------------------------------------------------------


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this module's own, whose settings the tests change."""
    group: Servers
    group, server = standalone()
    yield server
    group.stop()


DEFAULTS = {"save": "", "appendonly": "no", "maxmemory": "0", "maxmemory_policy": "noeviction"}


def check(server: RedisServer, **settings: str) -> dict[str, list[str]]:
    client = server.client()
    for name, value in {**DEFAULTS, **settings}.items():
        client.config_set(name.replace("_", "-"), value)
    result = run(SCRIPT, "--redis-url", server.url, "--json", "check")
    report: dict[str, list[str]] = json.loads(result.stdout)
    assert result.returncode == (1 if report["problems"] else 0), result.stderr
    client.close()
    return report


def test_check_flags_a_redis_that_keeps_nothing_on_disk(private_redis: RedisServer) -> None:
    (problem,) = check(private_redis)["problems"]
    assert 'appendonly no, save ""' in problem and "signs every user out" in problem
    assert check(private_redis, appendonly="yes")["problems"] == []
    snapshots = check(private_redis, save="900 1")
    assert snapshots["problems"] == []
    (warning,) = snapshots["warnings"]
    assert "snapshots only" in warning


@pytest.mark.parametrize(
    "policy",
    [
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ],
)
def test_check_flags_every_policy_that_can_evict_our_keys(
    private_redis: RedisServer, policy: str
) -> None:
    report = check(private_redis, appendonly="yes", maxmemory="100mb", maxmemory_policy=policy)
    (problem,) = report["problems"]
    assert f"maxmemory-policy is {policy}" in problem and "index" in problem
    unlimited = check(private_redis, appendonly="yes", maxmemory_policy=policy)
    assert unlimited["problems"] == [] and policy in unlimited["warnings"][0]


def test_check_accepts_noeviction_with_a_memory_limit(private_redis: RedisServer) -> None:
    report = check(
        private_redis, appendonly="yes", maxmemory="100mb", maxmemory_policy="noeviction"
    )
    assert report["problems"] == [] and report["warnings"] == []


def test_check_says_what_it_could_not_check_without_config() -> None:
    group, server = standalone(["--rename-command", "CONFIG", ""])  # as on managed Redis
    try:
        result = run(SCRIPT, "--redis-url", server.url, "--json", "check")
    finally:
        group.stop()
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["problems"] == []
    (warning,) = report["warnings"]
    assert "persistence and the eviction policy were not checked" in warning
