"""Django's own session tests on session_middleware.django.SessionStore. The harness
copies this file into Django's tests/sessions_tests/ as test_session_middleware.py, so
that runtests.py installs the sessions_tests app its imports need.

- SessionMiddlewareStoreTests: SessionTestsMixin on our store, the way Django's own
  backends use it (compare CacheSessionTests in sessions_tests/tests.py).
- SessionMiddlewareEngineTests: Django's SessionMiddlewareTests (which already run with
  SESSION_ENGINE set to this engine), where the test reads what the middleware stored
  through `Session.objects.get(session_key=...)`, Django's database table, read through
  this engine instead.
"""

from typing import Any
from unittest import mock

from django.test import SimpleTestCase

from session_middleware.django import SessionStore

from . import tests
from .tests import SessionMiddlewareTests, SessionTestsMixin


class SessionMiddlewareStoreTests(SessionTestsMixin, SimpleTestCase):
    backend = SessionStore
    session_engine = "session_middleware.django"


class _StoredSession:
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def get_decoded(self) -> dict[str, Any]:
        return self._data


class _StoredSessions:
    """`Session.objects.get(session_key=...)`, answered by this engine's store."""

    DoesNotExist = tests.Session.DoesNotExist

    class objects:  # Django's manager attribute
        @staticmethod
        def get(session_key: str) -> _StoredSession:
            store = SessionStore(session_key)
            if not store.exists(session_key):
                raise tests.Session.DoesNotExist("no session stored under that key")
            return _StoredSession(store.load())


class SessionMiddlewareEngineTests(SessionMiddlewareTests):
    def setUp(self) -> None:
        super().setUp()
        patcher = mock.patch.object(tests, "Session", _StoredSessions)
        patcher.start()
        self.addCleanup(patcher.stop)
