"""A user's sessions in Django's admin (UserSessionsAdminMixin), through Django's test client:
the listing on the user's change page, and the revoke and "end all sessions" actions, which
need a POST with the CSRF token, by staff allowed to change that user."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import authenticate, login
from django.core.management import call_command
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client
from django.test.utils import override_settings
from django.urls import clear_url_caches, path

from session_middleware import SessionConfig

from .support import REDIS_URL, SECRET
from .support.django_native.settings import FAST_HASHERS, configure

configure()

from django.contrib.auth.models import Permission, User  # noqa: E402

from session_middleware.django import admin as admin_module  # noqa: E402
from session_middleware.django._settings import get_config  # noqa: E402
from session_middleware.django.admin import (  # noqa: E402
    FIELD,
    STYLESHEET,
    UserSessionsAdminMixin,
)

PASSWORD = "correct horse battery"
PHONE = 'Mozilla/5.0 (iPhone) <script>alert("ua")</script>'
LAPTOP = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"
_names = itertools.count()


def sign_in(request: HttpRequest) -> HttpResponse:
    user = authenticate(request, username=request.POST["username"], password=PASSWORD)
    assert user is not None
    login(request, user)
    return JsonResponse({"user": user.get_username()})


def whoami(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"user": request.user.get_username() or None})


urlpatterns = [path("login", sign_in), path("whoami", whoami)]


def admin_site() -> Any:
    """An admin site of the tests' own with the opted-in user admin (Django's admin can
    be imported only once it is installed)."""
    from django.contrib import admin
    from django.contrib.auth.admin import UserAdmin

    class SessionsUserAdmin(UserSessionsAdminMixin, UserAdmin):  # type: ignore[misc]
        pass

    site = admin.AdminSite(name="sessions_admin")
    site.register(User, SessionsUserAdmin)
    return site


PROJECT = {
    "INSTALLED_APPS": [
        "session_middleware.django",
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.messages",
        "django.contrib.sessions",
    ],
    "ROOT_URLCONF": __name__,
    "ALLOWED_HOSTS": ["testserver"],
    "MIDDLEWARE": [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ],
    "TEMPLATES": [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ],
    "SESSION_ENGINE": "session_middleware.django",
    "PASSWORD_HASHERS": FAST_HASHERS,
}


@pytest.fixture(scope="module")
def project() -> Iterator[None]:
    with override_settings(**PROJECT):
        call_command("migrate", verbosity=0)
        urlpatterns.append(path("admin/", admin_site().urls))
        clear_url_caches()
        yield
        urlpatterns.pop()
    clear_url_caches()


@pytest.fixture
def config(project: None, key_prefix: str) -> Iterator[SessionConfig]:
    options = {"secret_key": SECRET, "redis_url": REDIS_URL, "key_prefix": key_prefix}
    with override_settings(SESSION_MIDDLEWARE=options):
        yield get_config()


def new_user(**fields: Any) -> Any:
    return User.objects.create_user(f"member{next(_names)}", password=PASSWORD, **fields)


def staff(*, may_change_users: bool = True) -> Client:
    """A staff user's browser, logged in, with CSRF checks on as in a real browser."""
    user = new_user(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_user"))
    if may_change_users:
        user.user_permissions.add(Permission.objects.get(codename="change_user"))
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    return browser


def signed_in(user: Any, user_agent: str) -> Client:
    browser = Client(HTTP_USER_AGENT=user_agent, REMOTE_ADDR="203.0.113.7")
    assert browser.post("/login", {"username": user.username}).status_code == 200
    return browser


def change_page(user: Any) -> str:
    return f"/admin/auth/user/{user.pk}/change/"


def token_of(page: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_the_change_page_lists_the_users_sessions(config: SessionConfig) -> None:
    member = new_user()
    signed_in(member, PHONE)
    signed_in(member, LAPTOP)
    page = staff().get(change_page(member))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Sessions" in html and "Last seen" in html
    assert "Firefox/133.0" in html and "203.0.113.7" in html
    assert ">Firefox on Linux</td>" in html  # the device label; the user agent is its title
    assert "&lt;script&gt;alert(&quot;ua&quot;)&lt;/script&gt;" in html  # escaped
    assert "<script>alert" not in html
    for info in config.list_sessions(str(member.pk)):
        assert f"/admin/auth/user/{member.pk}/sessions/{info.handle}/revoke/" in html
    assert f"/admin/auth/user/{member.pk}/sessions/end-all/" in html


def test_the_section_heading_is_not_repeated_as_the_fields_label(config: SessionConfig) -> None:
    member = new_user()
    signed_in(member, PHONE)
    html = staff().get(change_page(member)).content.decode()
    assert any(f'{STYLESHEET}" media="all"' in link for link in re.findall(r"<link[^>]*>", html))
    stylesheet = Path(admin_module.__file__).parent / "static" / STYLESHEET
    assert re.search(rf"\.field-{FIELD} label \{{\s*display: none;", stylesheet.read_text())


def test_revoke_ends_one_session(config: SessionConfig) -> None:
    member = new_user()
    phone, laptop = signed_in(member, PHONE), signed_in(member, LAPTOP)
    admin_browser = staff()
    token = token_of(admin_browser.get(change_page(member)).content.decode())
    (phone_session,) = [s for s in config.list_sessions(str(member.pk)) if s.user_agent == PHONE]
    url = f"/admin/auth/user/{member.pk}/sessions/{phone_session.handle}/revoke/"
    answer = admin_browser.post(url, {"csrfmiddlewaretoken": token}, follow=True)
    assert answer.redirect_chain == [(change_page(member), 302)]
    assert "The session was ended." in answer.content.decode()
    assert phone.get("/whoami").json()["user"] is None
    assert laptop.get("/whoami").json()["user"] == member.username
    again = admin_browser.post(url, {"csrfmiddlewaretoken": token}, follow=True)
    assert "That session had already ended." in again.content.decode()


def test_end_all_sessions_ends_every_one(config: SessionConfig) -> None:
    member = new_user()
    browsers = [signed_in(member, PHONE), signed_in(member, LAPTOP)]
    admin_browser = staff()
    token = token_of(admin_browser.get(change_page(member)).content.decode())
    url = f"/admin/auth/user/{member.pk}/sessions/end-all/"
    answer = admin_browser.post(url, {"csrfmiddlewaretoken": token}, follow=True)
    assert "Every session of this user was ended." in answer.content.decode()
    assert [browser.get("/whoami").json()["user"] for browser in browsers] == [None, None]
    assert config.list_sessions(str(member.pk)) == []
    assert admin_browser.get(change_page(member)).status_code == 200  # the admin's own lives


def test_the_actions_need_a_post_with_the_csrf_token(config: SessionConfig) -> None:
    member = new_user()
    phone = signed_in(member, PHONE)
    (session,) = config.list_sessions(str(member.pk))
    admin_browser = staff()
    revoke = f"/admin/auth/user/{member.pk}/sessions/{session.handle}/revoke/"
    end_all = f"/admin/auth/user/{member.pk}/sessions/end-all/"
    for url in (revoke, end_all):
        assert admin_browser.get(url).status_code == 405
        assert admin_browser.post(url).status_code == 403  # no CSRF token
    assert phone.get("/whoami").json()["user"] == member.username


def test_the_actions_need_staff_allowed_to_change_users(config: SessionConfig) -> None:
    member = new_user()
    phone = signed_in(member, PHONE)
    (session,) = config.list_sessions(str(member.pk))
    revoke = f"/admin/auth/user/{member.pk}/sessions/{session.handle}/revoke/"
    end_all = f"/admin/auth/user/{member.pk}/sessions/end-all/"
    viewer = staff(may_change_users=False)
    token = token_of(viewer.get(change_page(member)).content.decode())
    outsider = Client()
    outsider.force_login(new_user())
    for url in (revoke, end_all):
        assert viewer.post(url, {"csrfmiddlewaretoken": token}).status_code == 403
        refused = outsider.post(url)
        assert refused.status_code == 302 and "/admin/login/" in refused["Location"]
    assert phone.get("/whoami").json()["user"] == member.username
    assert len(config.list_sessions(str(member.pk))) == 1


def test_a_handle_of_another_user_ends_nothing(config: SessionConfig) -> None:
    member, other = new_user(), new_user()
    other_browser = signed_in(other, LAPTOP)
    (others,) = config.list_sessions(str(other.pk))
    admin_browser = staff()
    token = token_of(admin_browser.get(change_page(member)).content.decode())
    url = f"/admin/auth/user/{member.pk}/sessions/{others.handle}/revoke/"
    answer = admin_browser.post(url, {"csrfmiddlewaretoken": token}, follow=True)
    assert "That session had already ended." in answer.content.decode()
    assert other_browser.get("/whoami").json()["user"] == other.username
