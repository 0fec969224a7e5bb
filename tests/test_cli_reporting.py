"""The command line reports only the success it had: it says where it looked and what it
found, refuses to "invalidate" a user it finds nothing of, and reads the configurations
and keys Flask apps have. Run as a real process against the real Redis."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

import session_middleware
from session_middleware import SessionConfig, sessions
from session_middleware.cli import key_fingerprint

from .support import OTHER_SECRET, REDIS_URL, SECRET
from .support.apps import wsgi_app
from .test_cli import SCRIPT, cli, one_line_error, run

RAW_KEY = b"\xff\x00raw-flask-key\x80" + bytes(range(200, 230))  # not UTF-8


def log_in(config: SessionConfig, user: str = "alice", devices: int = 2) -> list[httpx.Client]:
    transport = httpx.WSGITransport(app=config(wsgi_app))
    clients = [httpx.Client(transport=transport, base_url="http://t") for _ in range(devices)]
    for client in clients:
        client.get(f"/login?user={user}")
    return clients


def test_version() -> None:
    shown = run(sys.executable, "-m", "session_middleware", "--version")
    assert shown.returncode == 0
    assert shown.stdout.strip() == f"session-middleware {session_middleware.__version__}"


def test_invalidate_under_the_wrong_key_changes_nothing_and_says_where_it_looked(
    config: SessionConfig, key_prefix: str
) -> None:
    phone, laptop = log_in(config)
    wrong = cli(key_prefix, "invalidate", "alice", SESSION_SECRET_KEY=OTHER_SECRET)
    line = one_line_error(wrong, 1)
    assert "nothing found for user 'alice'" in line and "--force" in line
    assert f"key prefix {key_prefix!r}" in line and f"{REDIS_URL} db 0" in line
    other = sessions(secret_key=OTHER_SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    assert f"secret key fingerprint {key_fingerprint(other)}" in line
    assert OTHER_SECRET not in line
    assert wrong.stdout == ""
    for client in (phone, laptop):
        assert client.get("/read").json()["user"] == "alice"  # nothing was changed

    forced = cli(key_prefix, "invalidate", "alice", "--force", SESSION_SECRET_KEY=OTHER_SECRET)
    assert forced.returncode == 0 and "anyway (--force)" in forced.stdout


def test_invalidate_says_what_it_found(config: SessionConfig, key_prefix: str) -> None:
    clients = log_in(config)
    done = cli(key_prefix, "--json", "invalidate", "alice")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["had_epoch"] is True and report["sessions_ended"] == 2
    assert report["where"] == {
        "redis": REDIS_URL,
        "db": 0,
        "key_prefix": key_prefix,
        "key_fingerprint": key_fingerprint(config),
    }
    assert all(client.get("/read").json()["user"] is None for client in clients)
    # The epoch is there now, with no session: found, so no --force needed.
    again = cli(key_prefix, "invalidate", "alice")
    assert again.returncode == 0 and "0 live sessions ended" in again.stdout


def test_sessions_of_an_unknown_user_say_where_they_looked(key_prefix: str) -> None:
    listed = cli(key_prefix, "sessions", "nobody")
    assert listed.stdout.startswith("no active sessions for nobody")
    line = one_line_error(listed, 1)
    assert "nothing found for user 'nobody'" in line and f"key prefix {key_prefix!r}" in line


def test_user_state_tells_a_caller_what_the_store_holds(config: SessionConfig) -> None:
    assert not config.user_state("alice").found
    log_in(config, devices=1)
    state = config.user_state("alice")
    assert state.found and state.has_epoch and len(state.sessions) == 1
    config.invalidate_user("alice")
    after = config.user_state("alice")
    assert after.has_epoch and after.sessions == []


@pytest.mark.anyio
async def test_auser_state_is_the_async_twin(config: SessionConfig) -> None:
    state = await config.auser_state("alice")
    assert not state.found and state.sessions == []
    await config.aclose()


def write_flask_quickstart(directory: Path, key_prefix: str, secret: str) -> None:
    """docs/frameworks/flask.md's quickstart, on this test's own key prefix."""
    (directory / "flaskapp.py").write_text(
        "from flask import Flask\n\n"
        "from session_middleware import sessions\n"
        "from session_middleware.flask import init_app\n\n"
        "app = Flask(__name__)\n"
        f"app.secret_key = {secret}\n"
        f"config = sessions(redis_url={REDIS_URL!r}, key_prefix={key_prefix!r})\n"
        "init_app(app, config)\n"
    )


@pytest.mark.parametrize("secret", [repr(SECRET), repr(SECRET.encode())])
def test_config_of_the_flask_quickstart_runs_in_an_app_context(
    config: SessionConfig, key_prefix: str, tmp_path: Path, secret: str
) -> None:
    log_in(config)
    write_flask_quickstart(tmp_path, key_prefix, secret)
    listed = run(SCRIPT, "--config", "flaskapp:config", "--json", "sessions", "alice", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 2


def test_a_secret_key_file_may_hold_bytes(key_prefix: str, tmp_path: Path) -> None:
    raw = sessions(secret_key=RAW_KEY, redis_url=REDIS_URL, key_prefix=key_prefix)
    log_in(raw)
    raw_file = tmp_path / "raw.key"
    raw_file.write_bytes(RAW_KEY)
    literal_file = tmp_path / "literal.key"
    literal_file.write_text(f"{RAW_KEY!r}\n")
    for key_file in (raw_file, literal_file):
        listed = cli(key_prefix, "--secret-key-file", str(key_file), "--json", "sessions", "alice")
        assert listed.returncode == 0, listed.stderr
        assert len(json.loads(listed.stdout)) == 2
