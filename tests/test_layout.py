"""The package's shape: its modules import each other one way, and an ASGI app (FastAPI's
integration included) never loads the WSGI driver."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import session_middleware

PACKAGE = Path(session_middleware.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports_at_load(path: Path) -> set[str]:
    """The package modules `path` imports when it is loaded (not inside functions, not
    under TYPE_CHECKING)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for child in [node] if not isinstance(node, ast.If) else node.body:
            if isinstance(child, ast.ImportFrom):
                base = package.split(".")
                if child.level:
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join([*base, *([child.module] if child.module else [])])
                else:
                    target = child.module or ""
                for alias in child.names:
                    candidate = f"{target}.{alias.name}"
                    found.add(candidate if _exists(candidate) else target)
            elif isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
    return {module for module in found if module.startswith("session_middleware")}


def _exists(module: str) -> bool:
    relative = Path(*module.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative).is_dir()


def test_no_two_modules_import_each_other_at_load() -> None:
    graph = {_module_name(path): _imports_at_load(path) for path in PACKAGE.rglob("*.py")}
    cycles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            cycles.append([*trail[trail.index(module) :], module])
            return
        for imported in sorted(graph.get(module, ())):
            if imported != module and not imported.startswith(module + "."):
                visit(imported, [*trail, module])

    for module in sorted(graph):
        visit(module, [])
    assert cycles == []


def test_the_drivers_do_not_import_the_decorator() -> None:
    for driver in ("asgi.py", "wsgi.py"):
        assert "session_middleware.config" not in _imports_at_load(PACKAGE / driver)


def _loaded_with(module: str) -> set[str]:
    """The package modules that loading `module` loads, its packages' __init__ included."""
    graph = {_module_name(path): _imports_at_load(path) for path in PACKAGE.rglob("*.py")}
    loaded: set[str] = set()
    waiting = [module]
    while waiting:
        parts = waiting.pop().split(".")
        for name in [".".join(parts[:end]) for end in range(1, len(parts) + 1)]:
            if name not in loaded:
                loaded.add(name)
                waiting.extend(graph.get(name, ()))
    return loaded


@pytest.mark.parametrize("driver, other", [("asgi", "wsgi"), ("wsgi", "asgi")])
def test_a_driver_never_loads_the_other(driver: str, other: str) -> None:
    """A driver builds on the configuration (_configuration), never on the decorator
    (config), which loads a driver only when it wraps an app: loading one driver never
    loads the other."""
    loaded = _loaded_with(f"session_middleware.{driver}")
    assert "session_middleware._configuration" in loaded
    assert {"session_middleware.config", f"session_middleware.{other}"}.isdisjoint(loaded)


def test_fastapi_never_loads_the_wsgi_driver() -> None:
    script = (
        "import sys, session_middleware.fastapi\n"
        "from fastapi import FastAPI\n"
        "from session_middleware import sessions\n"
        "sessions(secret_key='k' * 32)(FastAPI())\n"
        "print('session_middleware.wsgi' in sys.modules)\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "False"
