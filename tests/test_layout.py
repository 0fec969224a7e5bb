"""The package's shape: its modules import each other one way, so do its layers (the
top-level modules and packages), and an ASGI app (FastAPI's integration included) never
loads the WSGI driver."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import session_middleware

PACKAGE = Path(session_middleware.__file__).parent
README = PACKAGE.parent / "README.md"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports_at_load(path: Path) -> set[str]:
    """The package modules `path` imports when it is loaded (not inside functions, not
    under TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for child in [node] if not isinstance(node, ast.If) else node.body:
            found |= _imported(path, child)
    return found


def _imports_anywhere(path: Path) -> set[str]:
    """The package modules `path` imports, at load or later (inside functions), not under
    TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) not in typing_only:
            found |= _imported(path, node)
    return found


def _imported(path: Path, node: ast.AST) -> set[str]:
    """The package modules an import statement names (nothing for any other node)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    if isinstance(node, ast.ImportFrom):
        base = package.split(".")
        if node.level:
            base = base[: len(base) - (node.level - 1)]
            target = ".".join([*base, *([node.module] if node.module else [])])
        else:
            target = node.module or ""
        for alias in node.names:
            candidate = f"{target}.{alias.name}"
            found.add(candidate if _exists(candidate) else target)
    elif isinstance(node, ast.Import):
        found.update(alias.name for alias in node.names)
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


def _layer(module: str) -> str:
    """The top-level module or package of the package that `module` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_graph() -> dict[str, set[str]]:
    """Which layers each layer imports, lazy imports included."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        layer = _layer(_module_name(path))
        imported = {_layer(module) for module in _imports_anywhere(path)}
        graph.setdefault(layer, set()).update(imported - {layer})
    return graph


def knots(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one node: nodes that import each
    other round a cycle."""
    reaches = {node: _reachable(graph, node) for node in graph}
    found: list[set[str]] = []
    for node in sorted(graph):
        knot = {other for other in reaches[node] if node in reaches.get(other, set())}
        if len(knot) > 1 and knot not in found:
            found.append(knot)
    return found


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen = {start}
    pending = [start]
    while pending:
        for imported in graph.get(pending.pop(), set()):
            if imported not in seen:
                seen.add(imported)
                pending.append(imported)
    return seen


def test_the_layers_import_one_way() -> None:
    assert knots(layer_graph()) == []


def test_a_knot_of_layers_is_found() -> None:
    graph = {"core": {"protocol"}, "protocol": {"errors", "core"}, "errors": set()}
    assert knots(graph) == [{"core", "protocol"}]


def readme_rows() -> list[set[str]]:
    """The README's drawing of the layers, top row first: the layers named on each row."""
    text = README.read_text().split("\n## Architecture\n", 1)[1]
    drawing = text.split("```text\n", 1)[1].split("```", 1)[0]
    rows: list[set[str]] = []
    for line in drawing.splitlines():
        if line.startswith(" "):  # a row's names go on
            rows[-1] |= set(line.split())
        else:
            rows.append(set(re.split(r"\s{2,}", line.strip())[1:]))
    return rows


def test_the_readme_draws_every_layer_once() -> None:
    rows = readme_rows()
    drawn = [name for row in rows for name in row]
    assert sorted(drawn) == sorted(set(drawn)), "a layer is drawn twice"
    assert set(drawn) == set(layer_graph()), "the README's drawing of the layers is stale"


def test_each_layer_imports_only_its_row_and_the_rows_below_as_the_readme_draws() -> None:
    rows = readme_rows()
    row_of = {name: index for index, row in enumerate(rows) for name in row}
    upward = sorted(
        f"{layer} -> {imported}"
        for layer, imports in layer_graph().items()
        for imported in imports
        if row_of.get(imported, -1) < row_of.get(layer, -1)
    )
    assert upward == []


def test_the_protocol_and_the_transport_stay_below_the_core() -> None:
    graph = layer_graph()
    below = {"_protocol", "_transport"}
    for layer in below:
        assert _reachable(graph, layer) - {layer} <= below | {"errors"}, layer


def test_the_decisions_and_the_protocol_load_no_io_library() -> None:
    """Every module of the core but its runners, the protocol and the session import no
    client library and none of the transport: they can be read and run on their own."""
    pure = sorted(
        _module_name(path)
        for folder in ("_core", "_protocol")
        for path in (PACKAGE / folder).glob("*.py")
        if path.name != "runners.py"
    )
    io = ["redis", "hiredis", "sqlalchemy", "socket", "asyncio"]
    script = (
        "import sys\n"
        f"for name in {[*pure, 'session_middleware.session']!r}:\n"
        "    __import__(name)\n"
        "print(sorted(m for m in sys.modules\n"
        f"    if m.split('.')[0] in {io!r} or m.startswith('session_middleware._transport')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert "session_middleware._core.lifecycle" in pure
    assert loaded == "[]"


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
