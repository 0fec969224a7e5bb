"""Django's system checks build the whole configuration: every error sessions() would
raise with the settings is a check error with its hint, found by ``manage.py check``
instead of the first request; so are Django's own SessionMiddleware left beside this
package's, and cookie names, paths and domains browsers would drop or split."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test.utils import override_settings

from .support import REDIS_URL
from .test_django_checks import SAFE

DJANGOS = "django.contrib.sessions.middleware.SessionMiddleware"
OURS = "session_middleware.django.middleware.SessionMiddleware"


def errors(**changes: Any) -> list[checks.CheckMessage]:
    with override_settings(**{**SAFE, **changes}):
        found = checks.run_checks(tags=[checks.Tags.security])
    return [m for m in found if str(m.id).startswith("session_middleware.E")]


def test_an_unknown_keyword_is_a_check_error_naming_the_closest_one() -> None:
    [error] = errors(SESSION_MIDDLEWARE={"redis_url": REDIS_URL, "max_agee": 5})
    assert error.id == "session_middleware.E009"
    assert "max_agee" in error.msg and error.hint == "did you mean max_age?"
    with (
        override_settings(**{**SAFE, "SESSION_MIDDLEWARE": {"max_agee": 5}}),
        pytest.raises(SystemCheckError, match=r"session_middleware\.E009"),
    ):
        call_command("check")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"redis_url": "redis://127.0.0.1:6379/abc"}, "db number"),
        ({"redis_url": REDIS_URL, "key_prefix": "a{b}"}, "key_prefix"),
        ({"redis_url": REDIS_URL, "local_cache": 100}, "ASGI apps only"),
        ({"redis_url": REDIS_URL, "same_site": "sideways"}, "same_site"),
    ],
)
def test_every_error_sessions_would_raise_is_a_check_error(
    options: dict[str, Any], words: str
) -> None:
    [error] = errors(SESSION_MIDDLEWARE=options)
    assert error.id == "session_middleware.E009" and words in error.msg


def test_djangos_own_session_middleware_beside_this_one_is_flagged() -> None:
    both = ["django.middleware.security.SecurityMiddleware", DJANGOS, OURS]
    assert [e.id for e in errors(MIDDLEWARE=both)] == ["session_middleware.E010"]
    assert errors(MIDDLEWARE=[OURS]) == []
    assert errors(MIDDLEWARE=[DJANGOS]) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"SESSION_COOKIE_NAME": "__host-sessionid", "SESSION_COOKIE_SECURE": False},
        {"SESSION_COOKIE_NAME": "__SECURE-sessionid", "SESSION_COOKIE_SECURE": False},
        {"SESSION_COOKIE_NAME": "session id"},
        {"SESSION_COOKIE_NAME": "sessionid", "SESSION_COOKIE_PATH": "/a;b"},
        {"SESSION_COOKIE_NAME": "sessionid", "SESSION_COOKIE_DOMAIN": "example.com\r\nX: y"},
    ],
)
def test_cookie_names_paths_and_domains_browsers_drop_are_check_errors(
    changes: dict[str, Any],
) -> None:
    assert errors(**changes), changes
