"""One virtual environment per framework, in which that framework's own tests run: the
framework at the version of its pinned sdist (installed from the package index, where
pip keeps its wheels in its cache; the tests come from the sdist), the tools its tests
need, and this package installed (editable) from the working tree. Whatever framework
versions the project's own environment holds, the compat suites see only their pins.

An environment lives in CACHE/venvs/NAME, is built on demand with pip (in a staging
directory, renamed into place when complete, so that overlapping runs see all or
nothing) and is reused while its fingerprint (what was installed, from which working
tree, on which Python version) is unchanged.

Its interpreter is SM_COMPAT_PYTHON if set; otherwise the one running the harness, or,
where a pinned sdist's Requires-Python excludes that one, the first python3.N (on PATH,
or pyenv's) that it admits (Starlette 1.10 needs 3.11, while the project supports 3.10).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

try:
    from packaging.specifiers import SpecifierSet
except ModuleNotFoundError:  # the copy pip vendors
    from pip._vendor.packaging.specifiers import SpecifierSet

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli, or the copy pip vendors
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        from pip._vendor import tomli as tomllib

SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
BUILD_TIMEOUT = 900.0  # seconds for one environment's pip installs (a cold pip cache)


class Unavailable(Exception):
    """No environment can be built for a suite here (said why); the suite is skipped."""


@dataclass(frozen=True)
class Environment:
    name: str
    frameworks: tuple[str, ...]  # distributions installed at their pinned versions
    tools: tuple[str, ...]  # what the upstream tests need besides, as pip requirements


def python_version(interpreter: str) -> str:
    completed = subprocess.run(
        [interpreter, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return completed.stdout.strip()


def requires_python(source: Path) -> SpecifierSet:
    headers = HeaderParser().parsestr((source / "PKG-INFO").read_text())
    return SpecifierSet(headers.get("Requires-Python") or "")


def choose_interpreter(admitted: SpecifierSet) -> tuple[str, str]:
    """(path, version) of the interpreter for an environment whose frameworks admit
    `admitted`."""
    chosen = os.environ.get("SM_COMPAT_PYTHON")
    if chosen:
        version = _version_or_none(chosen)
        if version is None or version not in admitted:
            raise Unavailable(f"SM_COMPAT_PYTHON={chosen} is Python {version}; needs {admitted}")
        return chosen, version
    running = ".".join(str(part) for part in sys.version_info[:3])
    if running in admitted:
        return sys.executable, running
    for candidate in _other_pythons():
        version = _version_or_none(candidate)
        if version is not None and version in admitted:
            return candidate, version
    raise Unavailable(
        f"the pinned frameworks need Python {admitted}; this is {running} and no other "
        "Python was found (python3.N on PATH, or pyenv's): set SM_COMPAT_PYTHON to one"
    )


def _other_pythons() -> list[str]:
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found: list[str] = []
    for minor in SUPPORTED_PYTHONS:
        on_path = shutil.which(f"python{minor}")
        if on_path is not None:
            found.append(on_path)
        found.extend(str(path) for path in sorted(pyenv.glob(f"{minor}.*/bin/python{minor}")))
    return found


def _version_or_none(interpreter: str) -> str | None:
    try:
        return python_version(interpreter)
    except (OSError, subprocess.SubprocessError):
        return None  # e.g. a pyenv shim for a version that is not active


def _project_dependencies(root: Path) -> list[str]:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    return sorted(project["dependencies"])


def python_of(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure(
    environment: Environment,
    cache: Path,
    root: Path,
    pins: Mapping[str, str],
    source: Callable[[str], Path],
) -> Path:
    """The python of `environment`'s venv, built first if missing or out of date.
    `source(dist)` is the unpacked pinned sdist, whose Requires-Python is read."""
    admitted = SpecifierSet()
    for dist in environment.frameworks:
        admitted &= requires_python(source(dist))
    interpreter, version = choose_interpreter(admitted)
    requirements = [
        *(f"{dist}=={pins[dist]}" for dist in environment.frameworks),
        *environment.tools,
    ]
    fingerprint = {
        "python": version,  # not the interpreter's path: any one of this version will do
        "requirements": requirements,
        "project": str(root),
        "project_dependencies": _project_dependencies(root),
    }
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
    fingerprint["interpreter"] = interpreter
    venv = cache / "venvs" / f"{environment.name}-{digest}"
    marker = venv / "sm-compat-environment.json"
    if marker.exists():
        return python_of(venv)
    staging = venv.with_name(f"{venv.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        _build(staging, interpreter, requirements, root)
        (staging / marker.name).write_text(json.dumps(fingerprint, indent=1))
        move_into_place(staging, venv, marker)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _remove_older(cache / "venvs", environment.name, keep=venv)
    return python_of(venv)


def move_into_place(built: Path, target: Path, marker: Path) -> None:
    """Rename the complete directory `built` to `target` (whose complete copies hold
    `marker`), unless an overlapping run got there first."""
    if marker.exists():
        return
    shutil.rmtree(target, ignore_errors=True)
    try:
        built.rename(target)
    except OSError:
        if not marker.exists():  # not another run's complete copy
            raise


def _build(venv: Path, interpreter: str, requirements: list[str], root: Path) -> None:
    subprocess.run([interpreter, "-m", "venv", str(venv)], check=True, timeout=300)
    command = [
        str(python_of(venv)),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "-q",
        *requirements,
        "-e",
        str(root),
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"pip could not build the compat environment {venv.name}:\n"
            f"{' '.join(command)}\n{(completed.stdout + completed.stderr)[-3000:]}"
        )


def _remove_older(directory: Path, name: str, keep: Path) -> None:
    """Environments of the same name that this working tree built on the same Python
    minor version for an earlier fingerprint (not partial ones: another run may be
    building one). Those of other Pythons stay, for a matrix that runs them in turn."""

    def owner(path: Path) -> tuple[str, str]:
        found = json.loads((path / "sm-compat-environment.json").read_text())
        return found.get("project", ""), found.get("python", "").rpartition(".")[0]

    kept = owner(keep)
    for path in directory.glob(f"{name}-*"):
        complete = (path / "sm-compat-environment.json").exists()
        if path != keep and complete and owner(path) == kept:
            shutil.rmtree(path, ignore_errors=True)
