"""Django's SessionTestsMixin on session_middleware.django.SessionStore, the way Django's
own backends use it (compare CacheSessionTests in sessions_tests/tests.py). The harness
copies this file into Django's tests/sessions_tests/ as test_session_middleware.py, so
that runtests.py installs the sessions_tests app the mixin's module needs."""

from django.test import SimpleTestCase

from session_middleware.django import SessionStore

from .tests import SessionTestsMixin


class SessionMiddlewareStoreTests(SessionTestsMixin, SimpleTestCase):
    backend = SessionStore
    session_engine = "session_middleware.django"
