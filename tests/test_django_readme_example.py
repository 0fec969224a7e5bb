"""The README's Django views, run as written: a session ended elsewhere is seen by the
profile view, over WSGI and ASGI."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import AsyncClient, Client
from django.test.utils import override_settings
from django.urls import path

from .support import REDIS_URL, SECRET
from .support.django_native.settings import configure
from .test_django_native import PROJECT as NATIVE_PROJECT
from .test_django_native import needs_async_session_api

configure()

from session_middleware.django import SessionStore, get_session, invalidate_user  # noqa: E402

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _readme_views() -> dict[str, Any]:
    [block] = [
        body
        for body in re.findall(r"^```python\n(.*?)^```$", README, re.M | re.S)
        if body.startswith("# myapp/views.py") and "session_middleware.django" in body
    ]
    namespace: dict[str, Any] = {"__name__": "readme_views"}
    exec(compile(block, "README.md (Django views)", "exec"), namespace)
    return namespace


VIEWS = _readme_views()
urlpatterns = [
    path("profile", VIEWS["profile"]),
    path("logout-others", VIEWS["logout_others"]),
]
PROJECT = {
    **NATIVE_PROJECT,
    "ROOT_URLCONF": __name__,
    "MIDDLEWARE": [
        "session_middleware.django.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ],
}


@pytest.fixture
def project(key_prefix: str) -> Iterator[None]:
    options = {"secret_key": SECRET, "redis_url": REDIS_URL, "key_prefix": key_prefix}
    with override_settings(**PROJECT, SESSION_MIDDLEWARE=options):
        call_command("migrate", verbosity=0)
        yield


def _new_user() -> Any:
    return get_user_model().objects.create_user(f"readme-{time.time_ns()}", password="pw")


@pytest.mark.usefixtures("project")
def test_the_profile_view_sees_a_session_ended_elsewhere_over_wsgi() -> None:
    user = _new_user()
    client = Client()
    client.force_login(user)
    assert client.get("/profile").json()["signed_out_elsewhere"] is False
    invalidate_user(user)
    seen = client.get("/profile").json()
    assert seen == {"user": "", "signed_out_elsewhere": True}


@needs_async_session_api  # AsyncClient.aforce_login
@pytest.mark.anyio
@pytest.mark.usefixtures("project")
async def test_the_profile_view_sees_a_session_ended_elsewhere_over_asgi() -> None:
    from asgiref.sync import sync_to_async

    user = await sync_to_async(_new_user)()
    client = AsyncClient()
    await client.aforce_login(user)
    assert (await client.get("/profile")).json()["signed_out_elsewhere"] is False
    await sync_to_async(invalidate_user)(user)
    assert (await client.get("/profile")).json()["signed_out_elsewhere"] is True


@pytest.mark.usefixtures("project")
def test_get_session_is_refused_for_another_engine() -> None:
    from django.contrib.sessions.backends.signed_cookies import SessionStore as Cookies
    from django.http import HttpRequest

    from session_middleware import ConfigurationError

    request = HttpRequest()
    request.session = Cookies()
    with pytest.raises(ConfigurationError, match="SESSION_ENGINE"):
        get_session(request)
    request.session = SessionStore()
    assert get_session(request) is request.session
