"""The quickstarts type-check as written: every Python block of the README's Quickstart and
of each framework guide's "Turn it on", under mypy --strict with the project's settings.

(tests/test_readme.py also runs the README's quickstart apps against the real Redis.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
GUIDES = ["django", "fastapi", "flask", "starlette"]


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section {title!r}"
    return match.group(1)


def quickstarts() -> dict[str, str]:
    found = {}
    readme = section((ROOT / "README.md").read_text(), "Quickstart")
    for index, block in enumerate(FENCE.findall(readme)):
        found[f"readme_quickstart_{index}"] = block
    for guide in GUIDES:
        text = (ROOT / "docs" / "frameworks" / f"{guide}.md").read_text()
        for title in (
            "Turn it on",
            "Without the engine: the middleware around Django's application",
        ):
            if f"## {title}\n" in text:
                for index, block in enumerate(FENCE.findall(section(text, title))):
                    found[f"{guide}_{title.split(':')[0].lower().replace(' ', '_')}_{index}"] = (
                        block
                    )
    return found


def test_every_framework_has_a_quickstart_checked() -> None:
    names = " ".join(quickstarts())
    assert len(quickstarts()) >= 10
    for guide in GUIDES:
        assert f"{guide}_turn_it_on_0" in names, guide
    readme = "\n".join(quickstarts()[n] for n in quickstarts() if n.startswith("readme"))
    for framework in ("fastapi", "starlette", "flask", "django", "session_middleware.flask"):
        assert f"from {framework}" in readme, framework


def test_the_quickstarts_pass_mypy_strict(tmp_path: Path) -> None:
    for name, block in quickstarts().items():
        (tmp_path / f"{name}.py").write_text(block)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--strict",
            "--no-incremental",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
