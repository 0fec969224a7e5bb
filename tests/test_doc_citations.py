"""Every test the docs cite, as `tests/<file>.py` or `tests/<file>.py::<test>`, exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
CITATION = re.compile(r"tests/([\w/]+\.py)(?:::(\w+))?")
OTHER_PROJECTS = {"middleware/test_session.py"}  # Starlette's own, named by the Starlette guide


def citations() -> list[tuple[str, str, str | None]]:
    return [
        (doc.relative_to(ROOT).as_posix(), match[1], match[2] or None)
        for doc in DOCS
        for match in CITATION.finditer(doc.read_text())
        if match[1] not in OTHER_PROJECTS
    ]


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_every_test_the_docs_cite_exists() -> None:
    found = citations()
    assert len(found) > 50, "the citation pattern no longer matches the docs"
    missing = []
    for doc, module, test in found:
        path = ROOT / "tests" / module
        if not path.is_file() or (test is not None and test not in functions_in(path)):
            missing.append(f"{doc}: tests/{module}" + (f"::{test}" if test else ""))
    assert missing == []
