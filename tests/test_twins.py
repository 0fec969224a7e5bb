"""One logic, two faces: every sync method or function with an async twin (`x` and `ax`,
or `x_sync` and `x_async`) is the twin with `await` and `async` taken out, as unasync
(httpcore's tool) would generate it. A twin that drifts fails here; a pair that cannot be
one logic (it wraps two different libraries) is listed below with the reason."""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import unasync

import session_middleware._configuration
import session_middleware._request_cycle
import session_middleware.django.auth
import session_middleware.epochs._faces
import session_middleware.epochs.sql
from session_middleware._core import runners
from session_middleware._transport import clients, replication, round_trip

from .support.django_native.settings import configure

configure()

import session_middleware.django.engine  # noqa: E402  (needs Django's settings)

# Names whose async spelling is not the sync one with an `a` in front.
RENAMED = {
    "run_async": "run_sync",
    "drive_async": "drive_sync",
    "async_": "sync",
    "can_async": "can_sync",
    "_async_redis": "_sync_redis",  # which Redis a face runs on
}

# Pairs kept by hand on purpose: the two faces wrap different libraries.
DIFFERENT_BY_NATURE = {
    "RedisClients.close": "closes the one sync client, or the running loop's async one",
    "SQLEpochs.bump_in": "hooks a Connection's or an AsyncConnection's commit event",
    "SQLEpochs.dispose": "an async engine cannot be disposed of without awaiting",
    "session_middleware._core.runners.drive_sync": (
        "the async face awaits a Redis request's replies from the client itself, with no"
        " coroutine between, and a replicated write's WAIT holds its connection: the async"
        " face takes it off the shared multiplexed one, which the sync face does not have"
    ),
    "session_middleware._core.runners._serve_sync": (
        "the async face serves only the requests that are not Redis's (see drive_sync)"
    ),
    "session_middleware._core.runners._run_sql_sync": (
        "a Connection runs the request itself; an AsyncConnection runs it through run_sync"
    ),
    "session_middleware._transport.replication._serve_sync": (
        "redis-py's async cluster client reads its layout only once awaited and reaches a"
        " node through the node itself; the sync one is ready when built and hands out a"
        " node's client"
    ),
}

SCOPES: list[tuple[ModuleType, str | None]] = [
    (session_middleware._configuration, "Configuration"),
    (session_middleware._request_cycle, "RequestCycle"),
    (session_middleware.django.engine, "SessionStore"),
    (session_middleware.django.auth, None),
    (session_middleware.epochs._faces, "ProviderFaces"),
    (session_middleware.epochs.sql, "SQLEpochs"),
    (clients, "RedisClients"),
    (runners, None),
    (round_trip, None),
    (replication, None),
]


def async_name(name: str) -> str:
    for async_spelling, sync_spelling in RENAMED.items():
        if sync_spelling == name:
            return async_spelling
    if name.endswith("_sync"):
        return name.removesuffix("_sync") + "_async"
    return "_a" + name[1:] if name.startswith("_") else "a" + name


def pairs() -> list[tuple[str, Any, Any]]:
    found = []
    for module, class_name in SCOPES:
        scope: Any = module if class_name is None else getattr(module, class_name)
        names = vars(scope)
        for name, value in names.items():
            twin = async_name(name)
            if class_name is None and getattr(value, "__module__", None) != module.__name__:
                continue  # imported from another module: checked there
            if twin in names and inspect.iscoroutinefunction(_function(names[twin])):
                label = f"{class_name or module.__name__}.{name}"
                found.append((label, _function(value), _function(names[twin])))
    return found


def _function(value: Any) -> Any:
    return value.__func__ if isinstance(value, (classmethod, staticmethod)) else value


def body(source: str) -> str:
    """The function's AST without its docstring and name, as text."""
    (function,) = ast.parse(textwrap.dedent(source)).body
    assert isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
    statements = function.body
    if isinstance(statements[0], ast.Expr) and isinstance(statements[0].value, ast.Constant):
        statements = statements[1:]
    return ast.dump(ast.Module(body=statements, type_ignores=[]))


def unasynced(source: str, tmp_path: Path, replacements: dict[str, str]) -> str:
    source_dir, target_dir = tmp_path / "_async", tmp_path / "_sync"
    source_dir.mkdir(exist_ok=True)
    path = source_dir / "face.py"
    path.write_text(textwrap.dedent(source))
    unasync.unasync_files([str(path)], [unasync.Rule("/_async/", "/_sync/", replacements)])
    return (target_dir / "face.py").read_text()


def test_the_faces_found_are_the_known_pairs() -> None:
    labels = {label for label, _sync, _async in pairs()}
    assert len(labels) >= 27
    assert set(DIFFERENT_BY_NATURE) <= labels


ONE_LOGIC = [pair for pair in pairs() if pair[0] not in DIFFERENT_BY_NATURE]


@pytest.mark.parametrize("label, sync, async_", ONE_LOGIC, ids=[pair[0] for pair in ONE_LOGIC])
def test_the_sync_face_is_the_async_one_unasynced(
    label: str, sync: Any, async_: Any, tmp_path: Path
) -> None:
    assert inspect.iscoroutinefunction(async_) and not inspect.iscoroutinefunction(sync)
    replacements = dict(RENAMED)
    for _label, other_sync, other_async in pairs():
        replacements[other_async.__name__] = other_sync.__name__
    generated = unasynced(inspect.getsource(async_), tmp_path, replacements)
    assert body(generated) == body(inspect.getsource(sync)), f"{label} drifted from its twin"


def test_no_method_is_called_by_a_computed_name() -> None:
    """No dispatch by method-name strings: ``getattr(x, "a" + name)(...)`` is how two
    faces drifted apart before."""
    package = Path(session_middleware._configuration.__file__).parent
    found = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Call)
                and isinstance(node.func.func, ast.Name)
                and node.func.func.id == "getattr"
                and not isinstance(node.func.args[1], ast.Constant)
            ):
                found.append(f"{path.relative_to(package)}:{node.lineno}")
    assert found == []
