"""A DiscoverRunner that also writes every test's outcome to SM_COMPAT_RESULTS (JSON):
{test id: {"outcome": "passed"|"failed"|"skipped", "message": first line}}.
Test ids are unittest's: module.Class.method."""

from __future__ import annotations

import json
import os
import traceback
import unittest

from django.test.runner import DiscoverRunner

_results: dict[str, dict[str, str]] = {}


def _first_line(err: object) -> str:
    """The exception's first line, after the test file's line where it surfaced."""
    where = ""
    if isinstance(err, tuple) and len(err) == 3 and err[1] is not None:
        text = f"{type(err[1]).__name__}: {err[1]}"
        frames = [f for f in traceback.extract_tb(err[2]) if "/tests/" in f.filename]
        if frames:
            where = f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}: "
    else:
        text = str(err)
    first = text.strip().splitlines()[0] if text.strip() else ""
    return (where + first)[:300]


def _record(test: object, outcome: str, message: str = "") -> None:
    test_id = test.id() if hasattr(test, "id") else str(test)
    if test_id in _results and _results[test_id]["outcome"] == "failed":
        return  # a failed subtest marks the whole test failed
    _results[test_id] = {"outcome": outcome, "message": message}


class RecordingResult(unittest.TextTestResult):
    def addSuccess(self, test):
        super().addSuccess(test)
        _record(test, "passed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        _record(test, "failed", _first_line(err))

    def addError(self, test, err):
        super().addError(test, err)
        _record(test, "failed", _first_line(err))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        _record(test, "skipped", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        _record(test, "passed", "expected failure")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        _record(test, "failed", "unexpected success")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            _results[test.id()] = {
                "outcome": "failed",
                "message": f"{subtest._subDescription()}: {_first_line(err)}",
            }


class RecordingRunner(DiscoverRunner):
    def get_resultclass(self):  # type: ignore[no-untyped-def]
        return RecordingResult

    def run_suite(self, suite, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return super().run_suite(suite, **kwargs)
        finally:
            path = os.environ.get("SM_COMPAT_RESULTS")
            if path:
                with open(path, "w") as file:
                    json.dump(_results, file, indent=1, sort_keys=True)
