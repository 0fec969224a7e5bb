"""The ASGI and WSGI drivers and the Flask integration run the one request cycle
(_request_cycle.py): none of them opens or commits a session with the core, or runs steps,
by itself. (Django's engine is driven by Django's SessionMiddleware, lazily, and runs the
core's steps inside its own: see docs/architecture.md.)"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import session_middleware
from session_middleware import sessions
from session_middleware._protocol.cookies import CookieRef
from session_middleware._protocol.key_layout import new_anonymous_tag, new_session_id
from session_middleware._request_cycle import RequestCycle

PACKAGE = Path(session_middleware.__file__).parent
ADAPTERS = ["asgi.py", "wsgi.py", "flask.py", "_websocket_guard.py"]
# What only the request cycle calls.
CYCLE_ONLY = (
    "core.open",
    "core.fresh",
    "core.commit",
    "core.settled",
    "run_sync",
    "run_async",
    "drive_",
)


def core_run_by_hand(source: str) -> list[str]:
    """The calls in `source` that open or commit with the core, or run steps, themselves."""
    calls = [ast.unparse(node.func) for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Call)]  # fmt: skip
    return [call for call in calls if "_cycle" not in call and any(p in call for p in CYCLE_ONLY)]


@pytest.mark.parametrize("name", ADAPTERS)
def test_the_adapter_leaves_open_and_commit_to_the_request_cycle(name: str) -> None:
    assert core_run_by_hand((PACKAGE / name).read_text()) == [], f"{name} runs the core itself"


def test_a_core_run_by_hand_is_found() -> None:
    source = "opened = self.config.run_sync(self._core.open(cookie, time.time()))"
    assert core_run_by_hand(source) == ["self.config.run_sync", "self._core.open"]
    assert core_run_by_hand("opened = self._cycle.open(cookie, client)") == []


class StepsRecorded:
    """A runner that records the steps it is given, and runs none (no Redis here)."""

    def __init__(self) -> None:
        self.steps: list[Any] = []

    def run_sync(self, step: Any) -> Any:
        self.steps.append(step)
        step.close()
        raise session_middleware.StoreUnavailable("no Redis in this test")

    async def run_async(self, step: Any) -> Any:
        return self.run_sync(step)


@pytest.mark.anyio
@pytest.mark.parametrize("cookie", [None, "other=1", "session=not-one-of-ours"])
async def test_a_request_without_a_session_cookie_of_ours_runs_no_step(cookie: str | None) -> None:
    config = sessions(
        secret_key="cycle-secret-key-0123456789abcdef", redis_url="redis://127.0.0.1:1/0"
    )
    runner = StepsRecorded()
    cycle = RequestCycle(config.core, runner, fails_closed=True)
    for opened in (cycle.open(cookie, None), await cycle.aopen(cookie, None)):
        assert opened is not None and opened.ref is None and dict(opened.session) == {}
    assert runner.steps == []
    ref = CookieRef(new_anonymous_tag(), new_session_id())
    ours = f"{config.core.codec.name}={config.core.codec.issue(ref, None).value}"
    assert cycle.open(ours, None) is None  # read from Redis: the runner's 503
    assert await cycle.aopen(ours, None) is None
    assert len(runner.steps) == 2
