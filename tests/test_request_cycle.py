"""The ASGI and WSGI drivers and the Flask integration run the one request cycle
(_request_cycle.py): none of them opens or commits a session with the core, or runs steps,
by itself. (Django's engine is driven by Django's SessionMiddleware, lazily, and runs the
core's steps inside its own: see docs/architecture.md.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import session_middleware

PACKAGE = Path(session_middleware.__file__).parent
ADAPTERS = ["asgi.py", "wsgi.py", "flask.py", "_websocket_guard.py"]
# What only the request cycle calls.
CYCLE_ONLY = ("core.open", "core.commit", "core.settled", "run_sync", "run_async", "drive_")


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
