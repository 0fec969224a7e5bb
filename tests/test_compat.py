"""The compat suite: Starlette's, Flask's, Flask-Login's, Flask-Session's and Django's own
tests, from their sdists at pinned versions, run against our integrations (tests/compat/).

Each suite runs in its own subprocess (its own rootdir, conftest and settings) and in its
framework's own virtual environment, with the pinned framework whatever version this
environment holds; this test fails on an upstream failure not listed in
tests/compat/expected.toml, and on a listed difference that no longer happens. The first
run downloads the sdists and builds the environments with pip in .compat-cache/
(SM_COMPAT_CACHE); later runs are offline. Needs Redis at SM_COMPAT_REDIS_URL (default:
REDIS_URL, as the other tests); keys go under a prefix of each run's own and are deleted
afterwards. SM_COMPAT_SKIP=1 skips the suite (e.g. offline), saying so; so does a suite
whose pinned frameworks admit no Python found here.

One suite by hand, with every test's outcome:  python -m tests.compat.harness flask
"""

from __future__ import annotations

import os

import pytest

from tests.compat import harness

EXPECTED = harness.load_expected()


@pytest.mark.parametrize("name", list(harness.SUITES))
def test_upstream_suite(name: str) -> None:
    if os.environ.get("SM_COMPAT_SKIP") == "1":
        pytest.skip("SM_COMPAT_SKIP=1: the frameworks' own tests were not run")
    try:
        run = harness.run_suite(name)
    except harness.Unavailable as error:
        pytest.skip(str(error))
    print(harness.summary(run))
    wrong = harness.verdict(run, EXPECTED[harness.SUITES[name].expected_table])
    assert not wrong, harness.summary(run) + "\n" + "\n".join(wrong)


def test_expected_entries_cite_their_doc_line() -> None:
    """Each expected difference names the doc line that tells users, as
    ``file:line: words``; the words must be there (a sentence may wrap onto the next
    two lines), so that a doc edit cannot leave an entry pointing at nothing."""
    for suite, entries in EXPECTED.items():
        for key, entry in entries.items():
            path, _, rest = entry.doc.partition(":")
            number, _, words = rest.partition(":")
            assert number.isdigit() and words.strip(), (
                f"{suite} {key}: doc must read 'file:line: words', not {entry.doc!r}"
            )
            doc = harness.ROOT / path
            assert doc.is_file(), f"{suite} {key}: {path} does not exist"
            lines = doc.read_text().splitlines()[int(number) - 1 : int(number) + 2]
            assert " ".join(words.split()) in " ".join(" ".join(lines).split()), (
                f"{suite} {key}: {path}:{number} no longer says {words.strip()!r}"
            )


def test_a_listed_failure_must_fail_the_documented_way() -> None:
    """An entry with a `message` explains only a failure that says it: the same test
    failing for another reason (Starlette's trio cases answered by a 503 rather than the
    RuntimeError the docs promise) is reported."""
    listed = harness.Expected(
        "t::test[trio]", "failed", "reason", "doc", message=r"RuntimeError: .*\btrio\b"
    )
    suite = harness.SUITES["starlette"]

    def verdict_on(message: str) -> list[str]:
        run = harness.Run(suite, {"t::test[trio]": harness.Result("failed", message)}, 0.0, 1)
        return harness.verdict(run, {listed.id: listed})

    assert verdict_on("test_session.py:59: RuntimeError: asyncio only, not trio") == []
    (wrong,) = verdict_on("test_session.py:59: assert 503 == 200")
    assert wrong.startswith("FAILED differently from expected.toml t::test[trio]")


def test_no_environment_without_a_python_the_frameworks_admit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from packaging.specifiers import SpecifierSet

    from tests.compat import environments

    monkeypatch.delenv("SM_COMPAT_PYTHON", raising=False)
    with pytest.raises(harness.Unavailable, match="frameworks need Python >=9"):
        environments.choose_interpreter(SpecifierSet(">=9"))
