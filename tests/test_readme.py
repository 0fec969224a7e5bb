"""The README says what the code does: its commands, its snippets, its links; the docs'
table of settings and the 503 they quote are the code's."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest

import session_middleware
from session_middleware import SessionConfig, SessionMiddleware
from session_middleware.wsgi import WSGISessionMiddleware

from .support import REDIS_URL, SECRET

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SETTINGS_PAGE = (ROOT / "docs" / "settings.md").read_text()
ERRORS_PAGE = (ROOT / "docs" / "errors.md").read_text()
EXAMPLE_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -e '.[examples]' "
    "&& .venv/bin/python examples/run.py"
)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README) if lang == language]


def python_blocks() -> list[str]:
    return blocks("python")


def section(title: str, text: str = README) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section {title!r}"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("| ---"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows[1:]  # without the header


# -- the two commands a newcomer runs -------------------------------------------------------


def first_screen_blocks() -> list[str]:
    before_any_section = README.split("\n## ", 1)[0]
    return [body.strip() for lang, body in FENCE.findall(before_any_section)]


def test_the_readme_starts_with_the_two_commands() -> None:
    example, tests = first_screen_blocks()[1:3]  # after the install line
    assert example == EXAMPLE_COMMAND
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert tests in ci_lines, "the README's test command must be one CI runs"


def test_the_first_25_lines_hold_the_pitch_and_an_install_line_that_works_today() -> None:
    first_screen = "\n".join(README.splitlines()[:25])
    pitch = first_screen.split("\n\n")[1]
    assert "Redis" in pitch and "every device" in pitch
    install = first_screen_blocks()[0]
    assert install.split("#")[0].strip() == "pip install ."  # from a clone: not published yet
    assert "```sh\n" + install in first_screen
    assert "`session-middleware`" in first_screen  # the name it will have on the index
    assert 'name = "session-middleware"' in (ROOT / "pyproject.toml").read_text()


def test_the_supported_versions_are_the_packages_own() -> None:
    from session_middleware._transport.server_check import MIN_REDIS_VERSION

    pyproject = (ROOT / "pyproject.toml").read_text()
    first, last = re.search(r"Python (3\.\d+) to (3\.\d+)", README).groups()  # type: ignore[union-attr]
    assert f'requires-python = ">={first}"' in pyproject
    assert f'"Programming Language :: Python :: {last}"' in pyproject
    redis_version = ".".join(map(str, MIN_REDIS_VERSION))
    assert f"Redis server {redis_version} or newer" in README


def test_the_screenshot_is_shown_and_made_by_a_command_in_the_repo() -> None:
    first_screen = README.split("\n## ", 1)[0]
    assert re.search(r"!\[[^\]]+\]\(docs/demo\.png\)", first_screen)
    assert "`python examples/screenshot.py`" in first_screen
    assert (ROOT / "examples" / "screenshot.py").is_file()
    assert (ROOT / "docs" / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_file_and_link_it_names_exists() -> None:
    targets = re.findall(r"\]\(([^)#]+)\)", README)
    targets += re.findall(r"`(examples/[\w./-]+)`", README)
    assert "examples/run.py" in README
    for target in targets:
        if "://" not in target:
            assert (ROOT / target).exists(), target


def test_every_app_of_the_launcher_is_documented() -> None:
    launcher = (ROOT / "examples" / "run.py").read_text()
    choices = re.search(r"choices=\[([^\]]*)\]", launcher)
    assert choices
    for name in re.findall(r'"(\w+)"', choices.group(1)):
        assert name == "fastapi" or f"run.py --app {name}" in README, name


# -- the snippets ---------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_every_python_snippet_compiles(index: int) -> None:
    compile(python_blocks()[index], f"README.md python block {index}", "exec")


def runnable_snippets() -> list[str]:
    """Snippets that build a whole app (Django's need a project around them)."""
    return [
        block
        for block in python_blocks()
        if re.search(r"^app = |^app\.add_middleware|^async def app|^def app", block, re.M)
        and "django" not in block
    ]


def test_the_quickstarts_are_checked() -> None:
    assert len(runnable_snippets()) >= 5


@pytest.mark.anyio
@pytest.mark.parametrize("index", range(len(runnable_snippets())))
async def test_the_quickstart_apps_serve_requests(
    index: int, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each quickstart runs as written, on the test Redis under the test's key prefix."""
    built: list[SessionConfig] = []

    def prefixed_sessions(**settings: Any) -> SessionConfig:
        settings.update(key_prefix=key_prefix, redis_url=REDIS_URL)
        built.append(SessionConfig(**settings))
        return built[-1]

    class PrefixedMiddleware(SessionMiddleware):
        def __init__(self, app: Any, **settings: Any) -> None:
            settings.update(key_prefix=key_prefix, redis_url=REDIS_URL)
            super().__init__(app, **settings)
            built.append(self.config)

    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setattr(session_middleware, "sessions", prefixed_sessions)
    monkeypatch.setattr(session_middleware, "SessionMiddleware", PrefixedMiddleware)
    namespace: dict[str, Any] = {"__name__": f"readme_snippet_{index}"}
    exec(compile(runnable_snippets()[index], "README.md", "exec"), namespace)
    app = namespace["app"]

    client: httpx.Client | httpx.AsyncClient
    if isinstance(app, (flask.Flask, WSGISessionMiddleware)):
        client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://test")
        responses = [client.get("/"), client.get("/")]
    else:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        responses = [await client.get("/"), await client.get("/")]
        for config in built:
            await config.redis.async_().aclose()
    assert [r.status_code for r in responses] == [200, 200], responses[-1].text
    assert built, "the snippet did not configure sessions"


# -- the table of settings ------------------------------------------------------------------


def documented_settings() -> dict[str, str]:
    rows = table_rows(SETTINGS_PAGE.split("\n## ", 1)[0])
    return {row[0].strip("`"): row[1] for row in rows}


def test_the_settings_table_lists_every_setting() -> None:
    parameters = inspect.signature(SessionConfig.__init__).parameters
    names = [name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY]
    assert list(documented_settings()) == names


def test_the_settings_table_gives_each_default() -> None:
    parameters = inspect.signature(SessionConfig.__init__).parameters
    for name, default in documented_settings().items():
        value = parameters[name].default
        if value is inspect.Parameter.empty:
            assert default == "required", name
        elif isinstance(value, str):
            assert default.startswith(f'`"{value}"`'), name
        else:
            assert default.startswith(f"`{value!r}`"), name


def test_the_503_body_is_quoted_as_sent() -> None:
    from session_middleware import _fail_closed as unavailable

    assert unavailable.BODY.decode().strip() in ERRORS_PAGE
    assert f"Retry-After: {dict(unavailable.HEADERS)['retry-after']}" in ERRORS_PAGE
    assert f"code {unavailable.WEBSOCKET_CLOSE_CODE}" in ERRORS_PAGE
