"""Django's system checks of the session settings, run through Django's check framework,
and the engine refusing to build on the errors they report."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test.utils import override_settings

from .support import REDIS_URL
from .support.django_native.settings import configure

configure()

from session_middleware.django._settings import get_config  # noqa: E402

ENGINE = "session_middleware.django"
SAFE = {
    "INSTALLED_APPS": [
        "session_middleware.django",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
    ],
    "SESSION_ENGINE": ENGINE,
    "SESSION_MIDDLEWARE": {"redis_url": REDIS_URL},
    "DEBUG": False,
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_NAME": "__Host-sessionid",
}


def findings(**changes: Any) -> dict[str, int]:
    """The ids and levels of the package's findings under SAFE with `changes`."""
    with override_settings(**{**SAFE, **changes}):
        found = checks.run_checks(tags=[checks.Tags.security])
    return {m.id: m.level for m in found if str(m.id).startswith("session_middleware.")}


@pytest.fixture
def settings_of() -> Iterator[Any]:
    """A context manager: SAFE with changes, for the runtime tests."""
    yield lambda **changes: override_settings(**{**SAFE, **changes})


def test_safe_settings_have_no_finding_and_build() -> None:
    assert findings() == {}
    with override_settings(**SAFE):
        # A __Host- name needs only Django's own SESSION_COOKIE_SECURE now.
        assert get_config().core.codec is not None


def test_httponly_off_is_an_error() -> None:
    assert findings(SESSION_COOKIE_HTTPONLY=False) == {"session_middleware.E001": checks.ERROR}
    # manage.py check stops on it, as on any of Django's own errors.
    with (
        override_settings(**SAFE, SESSION_COOKIE_HTTPONLY=False),
        pytest.raises(SystemCheckError, match=r"session_middleware\.E001"),
    ):
        call_command("check")


def test_an_insecure_cookie_outside_debug_is_a_warning() -> None:
    plain = {"SESSION_COOKIE_SECURE": False, "SESSION_COOKIE_NAME": "sessionid"}
    assert findings(**plain) == {"session_middleware.W002": checks.WARNING}
    assert findings(**plain, DEBUG=True) == {}


def test_same_site_none_without_secure_is_an_error() -> None:
    found = findings(
        SESSION_COOKIE_SECURE=False, SESSION_COOKIE_NAME="sessionid", SESSION_COOKIE_SAMESITE="None"
    )
    assert found["session_middleware.E003"] == checks.ERROR
    assert findings(SESSION_COOKIE_SAMESITE="None") == {}  # with Secure: allowed


@pytest.mark.parametrize(
    "changes",
    [
        {"SESSION_COOKIE_DOMAIN": "example.com"},
        {"SESSION_COOKIE_SECURE": False},
        {"SESSION_COOKIE_PATH": "/app"},
    ],
)
def test_host_prefix_rules_are_errors(changes: dict[str, Any]) -> None:
    assert findings(**changes)["session_middleware.E004"] == checks.ERROR


def test_secure_prefix_without_secure_is_an_error() -> None:
    found = findings(SESSION_COOKIE_NAME="__Secure-sessionid", SESSION_COOKIE_SECURE=False)
    assert found["session_middleware.E005"] == checks.ERROR
    assert findings(SESSION_COOKIE_NAME="__Secure-sessionid") == {}


def test_keywords_django_ignores_and_a_foreign_serializer_are_warnings() -> None:
    ignored = {"redis_url": REDIS_URL, "https_only": False, "same_site": "strict"}
    found = findings(SESSION_MIDDLEWARE=ignored, SESSION_COOKIE_NAME="sessionid")
    assert found == {"session_middleware.W006": checks.WARNING}
    # With a __Host- name, https_only=False cannot even build (E009).
    assert "session_middleware.E009" in findings(SESSION_MIDDLEWARE=ignored)
    agreeing = {"redis_url": REDIS_URL, "https_only": True, "same_site": "lax"}
    assert findings(SESSION_MIDDLEWARE=agreeing) == {}
    serializer = "myproject.serializers.PickleSerializer"
    assert findings(SESSION_SERIALIZER=serializer) == {"session_middleware.W007": checks.WARNING}


def test_settings_for_an_engine_not_in_use_are_a_warning() -> None:
    found = findings(SESSION_ENGINE="django.contrib.sessions.backends.db")
    assert found == {"session_middleware.W008": checks.WARNING}
    # The cookie rules are the other engine's business then.
    assert "session_middleware.E001" not in findings(
        SESSION_ENGINE="django.contrib.sessions.backends.db", SESSION_COOKIE_HTTPONLY=False
    )


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        ({"SESSION_COOKIE_HTTPONLY": False}, "E001"),
        ({"SESSION_COOKIE_SECURE": False, "SESSION_COOKIE_SAMESITE": "None"}, "E003"),
        ({"SESSION_COOKIE_DOMAIN": "example.com"}, "E004"),
    ],
)
def test_the_engine_refuses_to_build_on_an_error(
    settings_of: Any, changes: dict[str, Any], check: str
) -> None:
    with settings_of(**changes), pytest.raises(ImproperlyConfigured, match=check):
        get_config()
    from session_middleware.django import SessionStore

    with settings_of(**changes), pytest.raises(ImproperlyConfigured):
        SessionStore()
