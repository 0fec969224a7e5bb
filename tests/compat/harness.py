"""Fetch the frameworks' own tests from their sdists (pinned) and run them against our
integrations, each suite in its own pytest (or Django runtests.py) subprocess.

Sdists are downloaded with pip into CACHE (``.compat-cache/`` at the repository root,
gitignored; override with SM_COMPAT_CACHE) only when missing, and unpacked there once,
so that repeated runs are offline. Each pytest suite runs in a working copy of its own
(upstream's tests and pytest config, our plugin beside them), removed afterwards; Django's
runtests.py runs in the unpacked tree, where the harness adds one module
(sessions_tests/test_session_middleware.py, from plugins/sm_compat_django_mixin.py).
Adapters: plugins/ (pytest plugins, Django settings and runner), shims/ (a stand-in for a
test-only import). Expected differences: expected.toml.

Run one suite by hand (prints the outcome of every test):
    python -m tests.compat.harness starlette|django_sessions|django_auth|flask|flask_login
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli, or the copy pip vendors
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        from pip._vendor import tomli as tomllib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CACHE = Path(os.environ.get("SM_COMPAT_CACHE", ROOT / ".compat-cache"))
PLUGINS = HERE / "plugins"
SHIMS = HERE / "shims"
EXPECTED = HERE / "expected.toml"
REDIS_URL = os.environ.get("SM_COMPAT_REDIS_URL", "redis://127.0.0.1:6379/0")

# The versions installed in the dev environment: the tests must match the code under them.
PINS = {
    "starlette": "1.10.0",
    "flask": "3.1.3",
    "Flask-Login": "0.6.3",
    "django": "5.2.19",
}


@dataclass(frozen=True)
class Suite:
    name: str
    dist: str
    timeout: float  # seconds, for the whole subprocess
    description: str


SUITES = {
    s.name: s
    for s in [
        Suite(
            "starlette",
            "starlette",
            120,
            "tests/middleware/test_session.py, SessionMiddleware imported from session_middleware",
        ),
        Suite(
            "flask",
            "flask",
            120,
            "session, flash and cookie tests of test_basic, test_testing, test_reqctx, "
            "test_session_interface, test_signals",
        ),
        Suite("flask_login", "Flask-Login", 120, "tests/test_login.py"),
        Suite(
            "django_sessions",
            "django",
            180,
            "sessions_tests' SessionTestsMixin on session_middleware.django.SessionStore",
        ),
        Suite(
            "django_auth", "django", 600, "auth_tests with SESSION_ENGINE=session_middleware.django"
        ),
    ]
}

# Flask's tests that concern the session: by name in test_basic, test_testing and
# test_reqctx, plus the session interface and flash-signal tests (25 in 3.1.3).
FLASK_SELECTION = [
    "tests/test_basic.py",
    "tests/test_testing.py",
    "tests/test_reqctx.py",
    "tests/test_session_interface.py",
    "tests/test_signals.py",
]
FLASK_KEYWORDS = "session or flash or cookie"


@dataclass
class Result:
    outcome: str  # passed | failed | skipped
    message: str = ""


@dataclass
class Run:
    suite: Suite
    results: dict[str, Result]
    seconds: float
    returncode: int
    output: str = ""
    problems: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results.values() if r.outcome == outcome)


# ---------------------------------------------------------------- sources


def version_problem(dist: str) -> str | None:
    try:
        installed = metadata.version(dist)
    except metadata.PackageNotFoundError:
        return f"{dist} is not installed"
    if installed != PINS[dist]:
        return (
            f"{dist} {installed} is installed but the compat suite is pinned to {PINS[dist]}: "
            "install the pinned version, or move the pin in tests/compat/harness.py "
            "(and review expected.toml against the new tests)"
        )
    return None


def sdist(dist: str) -> Path:
    """The pinned sdist of `dist` in the cache, downloaded with pip if missing."""
    version = PINS[dist]
    directory = CACHE / "sdists"
    found = _find_sdist(directory, dist, version)
    if found is None:
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                "--disable-pip-version-check",
                "-q",
                f"{dist}=={version}",
                "-d",
                str(directory),
            ],
            check=True,
            timeout=300,
        )
        found = _find_sdist(directory, dist, version)
        if found is None:
            raise RuntimeError(f"pip downloaded no sdist of {dist}=={version} into {directory}")
    return found


def _find_sdist(directory: Path, dist: str, version: str) -> Path | None:
    if not directory.is_dir():
        return None
    wanted = {
        f"{dist}-{version}.tar.gz".lower(),
        f"{dist.replace('-', '_')}-{version}.tar.gz".lower(),
    }
    for path in directory.iterdir():
        if path.name.lower() in wanted:
            return path
    return None


def source(dist: str) -> Path:
    """The unpacked sdist (its top directory), unpacked once into the cache."""
    archive = sdist(dist)
    target = CACHE / "src" / archive.name.removesuffix(".tar.gz")
    marker = target / ".sm-compat-unpacked"
    if not marker.exists():
        # Unpacked beside the target, then renamed: a concurrent run sees all or nothing.
        staging = target.with_name(f"{target.name}.partial-{uuid.uuid4().hex[:8]}")
        staging.mkdir(parents=True)
        try:
            with tarfile.open(archive) as tar:
                try:
                    tar.extractall(staging, filter="data")
                except TypeError:  # a Python without extraction filters (< 3.10.12)
                    tar.extractall(staging)  # a pinned sdist from PyPI
            (top,) = staging.iterdir()
            (top / marker.name).write_text(archive.name)
            if not marker.exists():
                shutil.rmtree(target, ignore_errors=True)
                try:
                    top.rename(target)
                except OSError:
                    if not marker.exists():  # not another run's complete copy
                        raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _workdir(suite: Suite) -> Path:
    """A working directory of this run's own (runs may overlap: a developer's and an
    editor's pytest). Removed after the run unless SM_COMPAT_KEEP=1."""
    path = CACHE / "run" / f"{suite.name}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path


# ---------------------------------------------------------------- preparing suites


STARLETTE_IMPORT = "from starlette.middleware.sessions import Session, SessionMiddleware\n"
STARLETTE_SWAPPED = (
    "from starlette.middleware.sessions import Session\n"
    "from session_middleware import SessionMiddleware\n"
)


def _prepare_starlette(work: Path) -> list[str]:
    src = source("starlette")
    shutil.copytree(src / "tests", work / "tests")
    shutil.copy(src / "pyproject.toml", work / "pyproject.toml")  # upstream's pytest config
    module = work / "tests" / "middleware" / "test_session.py"
    text = module.read_text()
    if text.count(STARLETTE_IMPORT) != 1:
        raise RuntimeError(f"the import to swap is not in {module} once: update harness.py")
    module.write_text(text.replace(STARLETTE_IMPORT, STARLETTE_SWAPPED))
    conftest = work / "tests" / "middleware" / "conftest.py"
    if conftest.exists():
        raise RuntimeError(f"{conftest} exists upstream now: update harness.py")
    shutil.copy(PLUGINS / "sm_compat_starlette.py", conftest)
    return ["tests/middleware/test_session.py"]


def _prepare_flask(work: Path) -> list[str]:
    src = source("flask")
    shutil.copytree(src / "tests", work / "tests")
    shutil.copy(src / "pyproject.toml", work / "pyproject.toml")
    return [*FLASK_SELECTION, "-k", FLASK_KEYWORDS, "-p", "sm_compat_flask"]


def _prepare_flask_login(work: Path) -> list[str]:
    src = source("Flask-Login")
    shutil.copytree(src / "tests", work / "tests")
    shutil.copy(src / "setup.cfg", work / "setup.cfg")
    return ["tests/test_login.py", "-p", "sm_compat_flask"]


PYTEST_SUITES = {
    "starlette": _prepare_starlette,
    "flask": _prepare_flask,
    "flask_login": _prepare_flask_login,
}


def _environment(prefix: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(PLUGINS), str(SHIMS)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env.update(
        PYTHONPATH=os.pathsep.join(paths),
        SM_COMPAT_PREFIX=prefix,
        SM_COMPAT_REDIS_URL=REDIS_URL,
        PYTHONDONTWRITEBYTECODE="1",
        **extra,
    )
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def _run_pytest(suite: Suite, prefix: str, work: Path) -> Run:
    arguments = PYTEST_SUITES[suite.name](work)
    report = work / "junit.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        *arguments,
        "-p",
        "no:cacheprovider",
        f"--junitxml={report}",
        "-o",
        "junit_family=xunit2",
        "-q",
        "--tb=short",
        f"--rootdir={work}",
    ]
    start = time.monotonic()
    completed = subprocess.run(
        command,
        cwd=work,
        env=_environment(prefix),
        capture_output=True,
        text=True,
        timeout=suite.timeout,
    )
    seconds = time.monotonic() - start
    output = completed.stdout + completed.stderr
    results = parse_junit(report) if report.exists() else {}
    run = Run(suite, results, seconds, completed.returncode, output)
    if not results or completed.returncode not in (0, 1):
        run.problems.append(
            f"pytest did not complete (exit {completed.returncode}):\n{output[-3000:]}"
        )
    return run


def parse_junit(path: Path) -> dict[str, Result]:
    results: dict[str, Result] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        classname = case.get("classname", "")
        name = case.get("name", "")
        test_id = f"{classname}::{name}" if classname else name
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                message = _one_line(child.get("message") or child.tag)
                where = _location(child.text or "", path.parent)
                if where and where not in message:
                    message = f"{where}: {message}"
                break
            if child.tag == "skipped":
                outcome, message = "skipped", _one_line(child.get("message") or "")
        if test_id in results and results[test_id].outcome == "failed":
            continue  # an error in teardown is reported as a second testcase
        results[test_id] = Result(outcome, message)
    return results


def _location(text: str, work: Path) -> str:
    """file:line of the last frame in the upstream tests, from the --tb=short report."""
    found = ""
    for line in text.splitlines():
        match = re.match(r"^(\S+\.py):(\d+): ", line)
        if match and match[1].replace(str(work) + os.sep, "").startswith("tests/"):
            found = f"{os.path.basename(match[1])}:{match[2]}"
    return found


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


MIXIN_MODULE = "test_session_middleware"


def _run_django(suite: Suite, prefix: str, work: Path) -> Run:
    src = source("django")
    tests = src / "tests"
    mixin = tests / "sessions_tests" / f"{MIXIN_MODULE}.py"
    text = (PLUGINS / "sm_compat_django_mixin.py").read_text()
    if not mixin.exists() or mixin.read_text() != text:  # shared by overlapping runs
        staged = mixin.with_name(f".{mixin.name}.{uuid.uuid4().hex[:8]}")
        staged.write_text(text)
        os.replace(staged, mixin)
    report = work / "results.json"
    label = f"sessions_tests.{MIXIN_MODULE}" if suite.name == "django_sessions" else "auth_tests"
    # Serial: Django's parallel runner needs tblib to report errors from its workers.
    parallel = os.environ.get("SM_COMPAT_DJANGO_PARALLEL", "1")
    command = [
        sys.executable,
        "runtests.py",
        label,
        "--settings=sm_compat_django_settings",
        f"--parallel={parallel}",
        "--noinput",
        "-v",
        "1",
    ]
    start = time.monotonic()
    completed = subprocess.run(
        command,
        cwd=tests,
        env=_environment(prefix, SM_COMPAT_RESULTS=str(report)),
        capture_output=True,
        text=True,
        timeout=suite.timeout,
    )
    seconds = time.monotonic() - start
    output = completed.stdout + completed.stderr
    results: dict[str, Result] = {}
    if report.exists():
        for test_id, found in json.loads(report.read_text()).items():
            results[test_id] = Result(found["outcome"], _one_line(found["message"]))
    run = Run(suite, results, seconds, completed.returncode, output)
    ran = re.search(r"^Ran (\d+) tests? in ", output, re.MULTILINE)
    if ran is None or int(ran[1]) != len(results) or completed.returncode not in (0, 1):
        run.problems.append(
            f"runtests.py did not complete ({len(results)} results, exit "
            f"{completed.returncode}):\n{output[-3000:]}"
        )
    return run


def delete_keys(prefix: str) -> int:
    """Delete the keys of one run (its own prefix only: never a flush)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=_glob_escape(prefix) + "*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += client.unlink(*batch)
        return deleted
    finally:
        client.close()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def run_suite(name: str) -> Run:
    suite = SUITES[name]
    prefix = f"smcompat:{name}:{uuid.uuid4().hex[:12]}:"
    work = _workdir(suite)
    try:
        if name.startswith("django"):
            return _run_django(suite, prefix, work)
        return _run_pytest(suite, prefix, work)
    finally:
        delete_keys(prefix)
        if os.environ.get("SM_COMPAT_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- expected differences


@dataclass(frozen=True)
class Expected:
    id: str  # a test id, or with pattern=True a regular expression matched in full
    outcome: str  # "failed" or "skipped"
    reason: str
    doc: str
    pattern: bool = False

    def matches(self, test_id: str) -> bool:
        return re.fullmatch(self.id, test_id) is not None if self.pattern else self.id == test_id


def load_expected(path: Path = EXPECTED) -> dict[str, dict[str, Expected]]:
    """{suite: {id or pattern: Expected}}. Each entry gives `id` (a test id) or `pattern`
    (a regular expression over test ids), the `outcome` ("failed" or "skipped"), its
    `reason` and `doc`: the doc line (file:line and the words) that states the difference."""
    data = tomllib.loads(path.read_text())
    table: dict[str, dict[str, Expected]] = {name: {} for name in SUITES}
    for suite_name, entries in data.items():
        if suite_name not in SUITES:
            raise ValueError(f"{path.name}: unknown suite {suite_name!r}")
        for entry in entries:
            pattern = "pattern" in entry
            key = entry.get("pattern", entry.get("id"))
            missing = {"outcome", "reason", "doc"} - set(entry)
            if key is None or ("id" in entry and pattern) or missing:
                raise ValueError(
                    f"{path.name}: [{suite_name}] entry {entry} needs id or "
                    "pattern, outcome, reason and doc"
                )
            if entry["outcome"] not in ("failed", "skipped"):
                raise ValueError(f"{path.name}: {key}: outcome must be 'failed' or 'skipped'")
            if not entry["reason"].strip() or not entry["doc"].strip():
                raise ValueError(f"{path.name}: {key}: empty reason or doc")
            if key in table[suite_name]:
                raise ValueError(f"{path.name}: {key} is listed twice")
            table[suite_name][key] = Expected(
                key, entry["outcome"], entry["reason"], entry["doc"], pattern
            )
    return table


def verdict(run: Run, expected: dict[str, Expected]) -> list[str]:
    """Everything wrong with a run: failures not listed, listed differences that no longer
    happen (or whose test is gone), and runs that produced no results."""
    wrong = list(run.problems)
    used: set[str] = set()
    for test_id, result in sorted(run.results.items()):
        listed = next((e for e in expected.values() if e.matches(test_id)), None)
        if listed is not None:
            used.add(listed.id)
        if result.outcome == "failed" and (listed is None or listed.outcome != "failed"):
            wrong.append(f"FAILED (not in expected.toml) {test_id}: {result.message}")
        elif listed is not None and result.outcome != listed.outcome:
            wrong.append(
                f"STALE expected.toml entry {listed.id}: {test_id} is listed as "
                f"{listed.outcome}, now {result.outcome}: remove the entry (and correct "
                "the doc line if it is no longer true)"
            )
    if run.results:
        for key in sorted(set(expected) - used):
            wrong.append(f"STALE expected.toml entry {key}: no such test was run")
    return wrong


def summary(run: Run) -> str:
    return (
        f"{run.suite.name}: {run.count('passed')} passed, {run.count('failed')} failed, "
        f"{run.count('skipped')} skipped in {run.seconds:.1f}s ({run.suite.description})"
    )


def main(argv: list[str]) -> int:
    names = argv or list(SUITES)
    expected = load_expected()
    status = 0
    for name in names:
        run = run_suite(name)
        for test_id, result in sorted(run.results.items()):
            print(f"{result.outcome:8} {test_id}  {result.message}")
        print(summary(run))
        for line in verdict(run, expected[name]):
            print("  " + line)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
