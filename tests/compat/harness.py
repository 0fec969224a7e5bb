"""Fetch the frameworks' own tests from their sdists (pinned) and run them against our
integrations, each suite in its own pytest (or Django runtests.py) subprocess, in the
framework's own virtual environment (environments.py: the pinned framework, the tools its
tests need, this package from the working tree), whatever the project's environment holds.

Sdists are downloaded with pip into CACHE (``.compat-cache/`` at the repository root,
gitignored; override with SM_COMPAT_CACHE) only when missing, and unpacked there once;
the environments are built there once; so repeated runs are offline. Each pytest suite
runs in a working copy of its own (upstream's tests and pytest config, our plugin beside
them), removed afterwards; Django's runtests.py runs in the unpacked tree, where the
harness adds one module (sessions_tests/test_session_middleware.py, from
plugins/sm_compat_django_mixin.py). Adapters: plugins/ (pytest plugins, Django settings
and runner). Expected differences: expected.toml.

Run suites by hand (prints the outcome of every test; no name: every suite):
    python -m tests.compat.harness [SUITE ...]
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
from pathlib import Path

from tests.compat import environments
from tests.compat.environments import Environment, Unavailable, tomllib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CACHE = Path(os.environ.get("SM_COMPAT_CACHE", ROOT / ".compat-cache"))
PLUGINS = HERE / "plugins"
EXPECTED = HERE / "expected.toml"
# The project's tests' server (REDIS_URL) unless the compat run is given its own.
REDIS_URL = os.environ.get(
    "SM_COMPAT_REDIS_URL", os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
)

# The upstream test suites run, each in an environment with exactly this version.
PINS = {
    "starlette": "1.10.0",
    "flask": "3.1.3",
    "Flask-Login": "0.6.3",
    # The last Flask-Session sdist with tests (0.6 to 0.8 ship none): its test_session.py
    "Flask-Session": "0.5.0",
    "django": "5.2.19",
}


ENVIRONMENTS = {
    e.name: e
    for e in [
        # httpx2 for starlette.testclient, as Starlette's `full` extra names it
        Environment("starlette", ("starlette",), ("pytest>=8", "trio>=0.25", "httpx2>=2.0.0")),
        Environment(
            "flask",
            ("flask", "Flask-Login"),
            # Werkzeug and pytest as Flask 3.1.3's uv.lock has them: its
            # test_bad_environ_raises_bad_request needs Werkzeug 3.1.5 (3.1.9 answers 404),
            # its conftest pytest 8. Flask-Login's tests import semantic_version.
            (
                "werkzeug==3.1.5",
                "pytest>=8,<9",
                "asgiref",
                "greenlet",
                "python-dotenv",
                "semantic-version",
            ),
        ),
        Environment("django", ("django",), ()),
    ]
}


@dataclass(frozen=True)
class Suite:
    name: str
    environment: str
    timeout: float  # seconds, for the whole subprocess
    description: str
    table: str = ""  # its table in expected.toml, when shared with another suite

    @property
    def expected_table(self) -> str:
        return self.table or self.name


DJANGO_SESSIONS = (
    "sessions_tests.tests, messages_tests and sessions_tests' SessionTestsMixin, "
    "with SESSION_ENGINE=session_middleware.django"
)

SUITES = {
    s.name: s
    for s in [
        Suite(
            "starlette",
            "starlette",
            120,
            "tests/middleware/test_session.py on asyncio and trio, SessionMiddleware "
            "imported from session_middleware",
        ),
        Suite("flask", "flask", 300, "the whole suite, every app wired with init_app"),
        Suite("flask_login", "flask", 120, "tests/test_login.py"),
        Suite(
            "flask_session",
            "flask",
            120,
            "the Redis tests of Flask-Session's test_session.py, its Session(app) swapped "
            "for init_app",
        ),
        Suite("django_sessions", "django", 300, f"{DJANGO_SESSIONS}, USE_TZ=False"),
        Suite(
            "django_sessions_use_tz",
            "django",
            300,
            f"{DJANGO_SESSIONS}, USE_TZ=True",
            table="django_sessions",
        ),
        Suite(
            "django_auth", "django", 600, "auth_tests with SESSION_ENGINE=session_middleware.django"
        ),
    ]
}

# Flask-Login 0.6.3 calls datetime.utcnow(), deprecated since Python 3.12, in its remember-me
# cookie and in its tests; its `filterwarnings = error` makes that an error there. Upstream's
# own code, not ours: ignored in those two modules only.
FLASK_LOGIN_WARNINGS = [
    f"-Wignore:datetime.datetime.utcnow() is deprecated:DeprecationWarning:{module}"
    for module in ("flask_login.login_manager", "test_login")
]


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
    setup_seconds: float = 0.0  # finding or building the environment

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results.values() if r.outcome == outcome)


# ---------------------------------------------------------------- sources


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
                "--ignore-requires-python",  # an environment may use another interpreter
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
            environments.move_into_place(top, target, marker)
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
    return ["tests", "-p", "sm_compat_flask"]


def _prepare_flask_login(work: Path) -> list[str]:
    src = source("Flask-Login")
    shutil.copytree(src / "tests", work / "tests")
    shutil.copy(src / "setup.cfg", work / "setup.cfg")
    return ["tests/test_login.py", "-p", "sm_compat_flask", *FLASK_LOGIN_WARNINGS]


FLASK_SESSION_IMPORT = "from flask_session import Session\n"
FLASK_SESSION_SWAPPED = "from sm_compat_flask_session import Session\n"


def _prepare_flask_session(work: Path) -> list[str]:
    module = work / "test_session.py"
    shutil.copy(source("Flask-Session") / module.name, module)
    text = module.read_text()
    if text.count(FLASK_SESSION_IMPORT) != 1:
        raise RuntimeError(f"the import to swap is not in {module} once: update harness.py")
    module.write_text(text.replace(FLASK_SESSION_IMPORT, FLASK_SESSION_SWAPPED))
    return [module.name, "-k", "test_redis_session or test_session_use_signer"]


PYTEST_SUITES = {
    "starlette": _prepare_starlette,
    "flask": _prepare_flask,
    "flask_login": _prepare_flask_login,
    "flask_session": _prepare_flask_session,
}


def python(suite: Suite) -> Path:
    """The interpreter of the suite's environment, built first if needed."""
    return environments.ensure(ENVIRONMENTS[suite.environment], CACHE, ROOT, PINS, source)


def _environment(prefix: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTEST_ADDOPTS"):
        env.pop(name, None)  # the suite's environment is its venv alone
    env.update(
        PYTHONPATH=str(PLUGINS),
        SM_COMPAT_PREFIX=prefix,
        SM_COMPAT_REDIS_URL=REDIS_URL,
        PYTHONDONTWRITEBYTECODE="1",
        **extra,
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def _run_pytest(suite: Suite, interpreter: Path, prefix: str, work: Path) -> Run:
    arguments = PYTEST_SUITES[suite.name](work)
    report = work / "junit.xml"
    command = [
        str(interpreter),
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


DJANGO_LABELS = {
    "django_sessions": ["sessions_tests.tests", f"sessions_tests.{MIXIN_MODULE}", "messages_tests"],
    "django_auth": ["auth_tests"],
}
DJANGO_LABELS["django_sessions_use_tz"] = DJANGO_LABELS["django_sessions"]


def _run_django(suite: Suite, interpreter: Path, prefix: str, work: Path) -> Run:
    src = source("django")
    tests = src / "tests"
    mixin = tests / "sessions_tests" / f"{MIXIN_MODULE}.py"
    text = (PLUGINS / "sm_compat_django_mixin.py").read_text()
    if not mixin.exists() or mixin.read_text() != text:  # shared by overlapping runs
        staged = mixin.with_name(f".{mixin.name}.{uuid.uuid4().hex[:8]}")
        staged.write_text(text)
        os.replace(staged, mixin)
    report = work / "results.json"
    # Serial: Django's parallel runner needs tblib to report errors from its workers.
    parallel = os.environ.get("SM_COMPAT_DJANGO_PARALLEL", "1")
    command = [
        str(interpreter),
        "runtests.py",
        *DJANGO_LABELS[suite.name],
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
        env=_environment(
            prefix,
            SM_COMPAT_RESULTS=str(report),
            SM_COMPAT_USE_TZ=str(suite.name.endswith("_use_tz")),
        ),
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
    """Run one suite (building its environment first if needed). Raises Unavailable when
    no environment can be built here."""
    suite = SUITES[name]
    start = time.monotonic()
    interpreter = python(suite)
    setup_seconds = time.monotonic() - start
    prefix = f"smcompat:{name}:{uuid.uuid4().hex[:12]}:"
    work = _workdir(suite)
    try:
        if name.startswith("django"):
            run = _run_django(suite, interpreter, prefix, work)
        else:
            run = _run_pytest(suite, interpreter, prefix, work)
        run.setup_seconds = setup_seconds
        return run
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
    message: str = ""  # a regular expression the failure's message must contain

    def explains(self, result: Result) -> bool:
        return result.outcome == self.outcome and (
            not self.message or re.search(self.message, result.message) is not None
        )

    def matches(self, test_id: str) -> bool:
        return re.fullmatch(self.id, test_id) is not None if self.pattern else self.id == test_id


def load_expected(path: Path = EXPECTED) -> dict[str, dict[str, Expected]]:
    """{table: {id or pattern: Expected}}. Each entry gives `id` (a test id) or `pattern`
    (a regular expression over test ids), the `outcome` ("failed" or "skipped"), its
    `reason` and `doc`: the doc line (file:line and the words) that states the difference;
    optionally `message`, a regular expression the failure's message must contain."""
    data = tomllib.loads(path.read_text())
    table: dict[str, dict[str, Expected]] = {s.expected_table: {} for s in SUITES.values()}
    for suite_name, entries in data.items():
        if suite_name not in table:
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
            if "message" in entry and entry["outcome"] != "failed":
                raise ValueError(f"{path.name}: {key}: a message is for a failure only")
            table[suite_name][key] = Expected(
                key,
                entry["outcome"],
                entry["reason"],
                entry["doc"],
                pattern,
                entry.get("message", ""),
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
        elif listed is not None and result.outcome == "failed" and not listed.explains(result):
            wrong.append(
                f"FAILED differently from expected.toml {test_id}: {result.message} "
                f"(expected a failure saying /{listed.message}/)"
            )
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
        f"{run.count('skipped')} skipped in {run.seconds:.1f}s, environment "
        f"{run.setup_seconds:.1f}s ({run.suite.description})"
    )


def main(argv: list[str]) -> int:
    names = argv or list(SUITES)
    expected = load_expected()
    status = 0
    for name in names:
        try:
            run = run_suite(name)
        except Unavailable as error:
            print(f"{name}: not run: {error}")
            continue
        for test_id, result in sorted(run.results.items()):
            print(f"{result.outcome:8} {test_id}  {result.message}")
        print(summary(run))
        for line in verdict(run, expected[SUITES[name].expected_table]):
            print("  " + line)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
