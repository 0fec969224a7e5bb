"""Every Python block of the README and the docs runs, against the real Redis.

A page is read top to bottom, so its blocks run in order in one namespace: a later block
may use what an earlier one defined. The names a reader supplies (their secret keys, their
Redis URL, their app) are given; `sessions(...)` and `SessionMiddleware` are kept on the
test's Redis and key prefix (the pytest plugin's fixtures). A page that ends with an ASGI
or WSGI `app` gets a request, which must not fail with a 5xx. The blocks of "Testing your
app" are a test module of their own, run by pytest. The few blocks that cannot run alone
are listed in FRAGMENTS, each with why; a listed block that stops being a fragment fails
the test, so that the list stays short and true.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest

import session_middleware
from session_middleware import SessionConfig, SessionMiddleware
from session_middleware._configuration import Configuration
from session_middleware.wsgi import WSGISessionMiddleware

from .support import OTHER_SECRET, SECRET
from .support.django_native.settings import configure

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
TESTING_PAGE = ROOT / "docs" / "testing.md"

# (page, a line of the block): why it cannot run on its own.
FRAGMENTS = {
    ("docs/frameworks/fastapi.md", "async def login(form: LoginForm"): (
        "routes that use the app's own LoginForm and check_password"
    ),
    ("docs/frameworks/fastapi.md", "async def current_user(user_id: CurrentUserId, db"): (
        "loads the app's own User from the app's own Database"
    ),
    ("docs/sessions.md", "from prometheus_client import Counter"): (
        "needs prometheus_client, which neither the package nor its tests install"
    ),
    ("docs/sql-epochs.md", "# sync: a Core Connection or an ORM Session"): (
        "the sync and the async way side by side, in the app's own transaction"
    ),
    ("docs/sql-epochs.md", "SQLEpochs(url, cache_ttl=30)"): "two settings of one call",
}


def blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text())


def name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def fragment_reason(page: Path, block: str) -> str | None:
    for (listed_page, line), reason in FRAGMENTS.items():
        if listed_page == name(page) and line in block:
            return reason
    return None


def pages_with_blocks() -> list[Path]:
    return [page for page in DOCS if blocks(page) and page != TESTING_PAGE]


def test_the_blocks_are_found() -> None:
    found = sum(len(blocks(page)) for page in DOCS)
    assert found >= 25, found
    for page, line in FRAGMENTS:
        assert any(line in block for block in blocks(ROOT / page)), (page, line)


@pytest.fixture
def on_the_test_redis(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    session_redis_url: str,
    session_key_prefix: str,
) -> list[Configuration]:
    """sessions(...) and SessionMiddleware kept on the test's Redis and key prefix; the
    configurations they build, to close afterwards."""
    built: list[Configuration] = []
    ours = {"redis_url": session_redis_url, "key_prefix": session_key_prefix}

    def test_sessions(**settings: Any) -> SessionConfig:
        if "redis" not in settings:
            settings.update(ours)
        config = SessionConfig(**settings)
        built.append(config)
        return config

    class TestMiddleware(SessionMiddleware):
        def __init__(self, app: Any, *args: Any, **settings: Any) -> None:
            if "config" not in settings:
                settings.update(ours)
            super().__init__(app, *args, **settings)
            built.append(self.config)

    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setattr(session_middleware, "sessions", test_sessions)
    monkeypatch.setattr(session_middleware, "SessionMiddleware", TestMiddleware)
    monkeypatch.chdir(tmp_path)  # a block may write a file (an SQLite database)
    configure()  # the Django blocks run in the Django project of the tests
    return built


async def readers_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The reader's own ASGI app, which a block wraps with `app = config(app)`."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def readers_names(redis_url: str) -> dict[str, Any]:
    return {
        "app": readers_app,
        "SECRET_KEY": SECRET,
        "NEW_SECRET_KEY": SECRET,
        "OLD_SECRET_KEY": OTHER_SECRET,
        "REDIS_URL": redis_url,
    }


@pytest.mark.anyio
@pytest.mark.parametrize("page", pages_with_blocks(), ids=name)
async def test_every_block_runs(
    page: Path, on_the_test_redis: list[Configuration], session_redis_url: str
) -> None:
    namespace: dict[str, Any] = {
        "__name__": f"doc_{page.stem.replace('-', '_')}",
        **readers_names(session_redis_url),
    }
    for index, block in enumerate(blocks(page)):
        where = f"{name(page)} python block {index}"
        if fragment_reason(page, block) is None:
            # dont_inherit: compiled as written, not under this module's __future__ import.
            exec(compile(block, where, "exec", dont_inherit=True), namespace)
            continue
        with pytest.raises(Exception):  # noqa: B017 (whatever a fragment lacks)
            exec(compile(block, where, "exec", dont_inherit=True), dict(namespace))
    try:
        await serves(namespace.get("app"))
    finally:
        for config in on_the_test_redis:
            await config.aclose()
            config.close()


async def serves(app: Any) -> None:
    """A GET of / is not a server error, when the page built an app."""
    if app is None or not callable(app):
        return
    if isinstance(app, (flask.Flask, WSGISessionMiddleware)):
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
            status = client.get("/").status_code
    else:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            status = (await client.get("/")).status_code
    assert status < 500


def blocks_of_the_testing_page(django: bool) -> list[str]:
    return [block for block in blocks(TESTING_PAGE) if ("django" in block) == django]


def test_the_testing_page_is_a_test_module_that_passes(
    tmp_path: Path, session_redis_url: str
) -> None:
    page = blocks_of_the_testing_page(django=False)
    assert len(page) >= 5
    module = tmp_path / "test_from_the_docs.py"
    module.write_text("\n\n".join(page))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(module)],
        cwd=tmp_path,
        env={**os.environ, "REDIS_URL": session_redis_url},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    tests = len(re.findall(r"^(?:async )?def test_", module.read_text(), re.M))
    assert f"{tests} passed" in result.stdout, result.stdout


DJANGO_PROJECT = {
    "INSTALLED_APPS": [
        "session_middleware.django",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
    ],
    "SESSION_ENGINE": "session_middleware.django",
}


def test_the_testing_pages_django_test_passes(
    session_redis_url: str, session_key_prefix: str
) -> None:
    """Run in a Django project: the tests' SQLite one, migrated."""
    configure()
    from django.core.management import call_command
    from django.test.utils import override_settings

    [block] = blocks_of_the_testing_page(django=True)
    namespace: dict[str, Any] = {"__name__": "doc_testing_django"}
    with override_settings(**DJANGO_PROJECT):
        call_command("migrate", verbosity=0)
        exec(compile(block, "docs/testing.md django block", "exec", dont_inherit=True), namespace)
        tests = [value for key, value in namespace.items() if key.startswith("test_")]
        assert len(tests) == 1
        tests[0](session_redis_url, session_key_prefix)
