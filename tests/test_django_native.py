"""The Django integration: SESSION_ENGINE = "session_middleware.django" and django.contrib.auth.

A real Django project (SQLite file, django.contrib.auth, Django's SessionMiddleware and
AuthenticationMiddleware) against the real Redis, driven over WSGI and ASGI by Django's own
test clients and by httpx.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import django
import httpx
import pytest
from django.contrib.auth import (
    authenticate,
    get_user_model,
    login,
    logout,
    update_session_auth_hash,
)
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.test import AsyncClient, Client
from django.test.utils import override_settings
from django.urls import path
from django.utils import timezone

from session_middleware import SessionConfig, StoreUnavailable, sessions
from session_middleware._fail_closed import BODY
from session_middleware._protocol.cookies import CookieRef
from session_middleware._protocol.key_layout import new_anonymous_tag, new_session_id

from .support import OTHER_SECRET, REDIS_URL, SECRET
from .support.clock import clock_of
from .support.counting import Counter, counted_sync_client
from .support.django_native.settings import FAST_HASHERS, configure
from .support.stored import session_keys

if django.VERSION >= (5, 0):
    from django.contrib.auth import aauthenticate, alogin, alogout

needs_async_session_api = pytest.mark.skipif(
    django.VERSION < (5, 0),
    reason="Django 5.0 added the async session and auth API (aget, aset, auser, alogin...)",
)

configure()

from session_middleware.django import SessionStore, invalidate_user  # noqa: E402
from session_middleware.django import engine as django_engine  # noqa: E402
from session_middleware.django._settings import get_config  # noqa: E402
from session_middleware.django.engine import CLEAR_EXPIRED_REASON  # noqa: E402

from .support.django_native.models import Member  # noqa: E402

ENGINE = "session_middleware.django"
COOKIE = "sessionid"
PROJECT = {
    "INSTALLED_APPS": [
        "session_middleware.django",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "tests.support.django_native.apps.NativeTestsConfig",
    ],
    "ROOT_URLCONF": __name__,
    "ALLOWED_HOSTS": ["testserver"],
    "MIDDLEWARE": [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ],
    "SESSION_ENGINE": ENGINE,
    "PASSWORD_HASHERS": FAST_HASHERS,
}
PASSWORD = "correct horse battery"


class QuickPBKDF2(PBKDF2PasswordHasher):
    iterations = 10


_names = itertools.count()


# -- the project's views -------------------------------------------------------------


def state(request: HttpRequest, user: Any) -> JsonResponse:
    session = request.session
    return JsonResponse(
        {
            "user": user.get_username() if user.is_authenticated else None,
            "bound": getattr(session, "user_id", None),  # None under Django's own engines
            "rejected": getattr(session, "rejected", None),
            "data": {k: v for k, v in session.items() if not k.startswith("_")},
        }
    )


def read(request: HttpRequest) -> JsonResponse:
    return state(request, request.user)


def put(request: HttpRequest) -> JsonResponse:
    request.session[request.POST["key"]] = request.POST["value"]
    return state(request, request.user)


def sign_in(request: HttpRequest) -> JsonResponse:
    user = authenticate(request, username=request.POST["username"], password=PASSWORD)
    if user is None:
        return JsonResponse({"error": "bad credentials"}, status=401)
    login(request, user)
    return state(request, user)


def sign_out(request: HttpRequest) -> JsonResponse:
    logout(request)
    return state(request, request.user)


def change_password(request: HttpRequest) -> JsonResponse:
    user = request.user
    user.set_password(request.POST["password"])
    user.save()
    if request.POST.get("keep") == "1":
        update_session_auth_hash(request, user)
    return state(request, user)


def change_password_in_a_transaction(request: HttpRequest) -> JsonResponse:
    """The session is saved inside the transaction, before the change commits."""
    user = request.user
    with transaction.atomic():
        user.set_password(request.POST["password"])
        user.save()
        update_session_auth_hash(request, user)
        request.session.save()
    return state(request, user)


def logout_others(request: HttpRequest) -> JsonResponse:
    request.session.logout_others()
    return state(request, request.user)


async def aread(request: HttpRequest) -> JsonResponse:
    user = await request.auser()
    session = request.session
    return JsonResponse(
        {
            "user": user.get_username() if user.is_authenticated else None,
            "bound": session.user_id,
            "rejected": session.rejected,
            "data": {"cart": await session.aget("cart")} if await session.ahas_key("cart") else {},
        }
    )


async def aput(request: HttpRequest) -> JsonResponse:
    await request.session.aset(request.POST["key"], request.POST["value"])
    return JsonResponse({"ok": True})


async def asign_in(request: HttpRequest) -> JsonResponse:
    user = await aauthenticate(request, username=request.POST["username"], password=PASSWORD)
    if user is None:
        return JsonResponse({"error": "bad credentials"}, status=401)
    await alogin(request, user)
    return JsonResponse({"user": user.get_username()})


async def asign_out(request: HttpRequest) -> JsonResponse:
    await alogout(request)
    return JsonResponse({"user": None})


urlpatterns = [
    path("read", read),
    path("put", put),
    path("login", sign_in),
    path("logout", sign_out),
    path("password", change_password),
    path("password-in-a-transaction", change_password_in_a_transaction),
    path("logout-others", logout_others),
    path("aread", aread),
    path("aput", aput),
    path("alogin", asign_in),
    path("alogout", asign_out),
]


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project() -> Iterator[None]:
    with override_settings(**PROJECT):
        call_command("migrate", verbosity=0)
        if Member._meta.db_table not in connection.introspection.table_names():
            with connection.schema_editor() as editor:
                editor.create_model(Member)
        yield


@pytest.fixture
def config(project: None, key_prefix: str) -> Iterator[SessionConfig]:
    """The engine's configuration, from SESSION_MIDDLEWARE, on this test's key prefix."""
    options = {"secret_key": SECRET, "redis_url": REDIS_URL, "key_prefix": key_prefix}
    with override_settings(SESSION_MIDDLEWARE=options):
        yield get_config()


def new_user() -> Any:
    return get_user_model().objects.create_user(
        f"user{next(_names)}-{time.time_ns()}", password=PASSWORD
    )


# -- browsers: Django's test clients and httpx, over WSGI and ASGI -----------------------


class _CookieJar:
    """The session cookie of a Django test client or of an httpx client."""

    kind: str
    client: Any

    def _start(self, cookie: str | None) -> None:
        if cookie is not None:
            self.client.cookies[COOKIE] = cookie

    @property
    def cookie(self) -> str | None:
        if self.kind == "django":
            morsel = self.client.cookies.get(COOKIE)
            return morsel.value if morsel is not None and morsel.value else None
        return self.client.cookies.get(COOKIE)  # type: ignore[no-any-return]


class Browser(_CookieJar):
    """One cookie jar over WSGI: Django's Client or httpx with WSGITransport."""

    def __init__(self, kind: str, cookie: str | None = None) -> None:
        self.kind = kind
        if kind == "django":
            self.client = Client()
        else:
            transport = httpx.WSGITransport(app=WSGIHandler())
            self.client = httpx.Client(transport=transport, base_url="http://testserver")
        self._start(cookie)

    def get(self, path: str) -> dict[str, Any]:
        response = self.client.get(path)
        assert response.status_code == 200, response.content
        return response.json()  # type: ignore[no-any-return]

    def post(self, path: str, **data: str) -> dict[str, Any]:
        response = self.client.post(path, data=data)
        assert response.status_code == 200, response.content
        return response.json()  # type: ignore[no-any-return]


class AsyncBrowser(_CookieJar):
    """One cookie jar over ASGI: Django's AsyncClient or httpx with ASGITransport."""

    def __init__(self, kind: str, cookie: str | None = None) -> None:
        self.kind = kind
        if kind == "django":
            self.client = AsyncClient()
        else:
            transport = httpx.ASGITransport(app=ASGIHandler())
            self.client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        self._start(cookie)

    async def get(self, path: str) -> dict[str, Any]:
        response = await self.client.get(path)
        assert response.status_code == 200, response.content
        return response.json()  # type: ignore[no-any-return]

    async def post(self, path: str, **data: str) -> dict[str, Any]:
        response = await self.client.post(path, data=data)
        assert response.status_code == 200, response.content
        return response.json()  # type: ignore[no-any-return]


# -- request.session over WSGI and ASGI ---------------------------------------------------


@pytest.mark.parametrize("kind", ["django", "httpx"])
def test_wsgi_login_and_logout(kind: str, config: SessionConfig, key_prefix: str) -> None:
    user = new_user()
    browser = Browser(kind)
    browser.post("/put", key="cart", value="apples")
    anonymous = browser.cookie
    assert anonymous is not None and config.core.codec.decode(anonymous) is not None

    state = browser.post("/login", username=user.username)
    assert state["user"] == user.username
    logged_in = browser.cookie
    assert logged_in not in (None, anonymous), "login() must give a new session id"
    assert browser.get("/read") == {
        "user": user.username,
        "bound": str(user.pk),
        "rejected": None,
        "data": {"cart": "apples"},
    }
    assert config.epochs.get(user.pk) is not None, "login() stamps the user's epoch"
    assert Browser(kind, cookie=anonymous).get("/read")["data"] == {}, "the old id is dead"

    assert browser.post("/logout")["user"] is None
    assert browser.cookie is None, "logout() clears the cookie"
    assert session_keys(key_prefix) == []
    assert Browser(kind, cookie=logged_in).get("/read")["user"] is None


@needs_async_session_api
@pytest.mark.parametrize("kind", ["django", "httpx"])
@pytest.mark.anyio
async def test_asgi_login_and_logout(kind: str, config: SessionConfig, key_prefix: str) -> None:
    user = await get_user_model().objects.acreate(username=f"async{next(_names)}-{time.time_ns()}")
    user.set_password(PASSWORD)
    await user.asave()
    browser = AsyncBrowser(kind)
    await browser.post("/aput", key="cart", value="pears")
    anonymous = browser.cookie
    assert anonymous is not None

    await browser.post("/alogin", username=user.username)
    assert browser.cookie not in (None, anonymous)
    assert await browser.get("/aread") == {
        "user": user.username,
        "bound": str(user.pk),
        "rejected": None,
        "data": {"cart": "pears"},
    }
    assert (await AsyncBrowser(kind, cookie=anonymous).get("/aread"))["data"] == {}
    assert (await browser.get("/read"))["user"] == user.username, "a sync view under ASGI"

    await browser.post("/alogout")
    assert browser.cookie is None
    assert session_keys(key_prefix) == []
    assert (await browser.get("/aread"))["user"] is None


@needs_async_session_api
@pytest.mark.anyio
async def test_asgi_invalidation_is_seen_by_async_views(config: SessionConfig) -> None:
    user = await get_user_model().objects.acreate(username=f"inval{next(_names)}-{time.time_ns()}")
    user.set_password(PASSWORD)
    await user.asave()
    browser = AsyncBrowser("httpx")
    await browser.post("/alogin", username=user.username)
    assert (await browser.get("/aread"))["user"] == user.username

    await config.ainvalidate_user(user.pk)
    assert await browser.get("/aread") == {
        "user": None,
        "bound": None,
        "rejected": "epoch",
        "data": {},
    }


# -- Django auth: password changes and "log out my other devices" --------------------------


def test_password_change_ends_other_sessions_and_keeps_this_one(config: SessionConfig) -> None:
    user = new_user()
    here, elsewhere = Browser("django"), Browser("httpx")
    for browser in (here, elsewhere):
        browser.post("/login", username=user.username)

    here.post("/password", password="a new password", keep="1")

    assert here.get("/read")["user"] == user.username, "update_session_auth_hash keeps it"
    assert elsewhere.get("/read") == {"user": None, "bound": None, "rejected": "epoch", "data": {}}


def test_password_change_without_update_session_auth_hash_ends_every_session(
    config: SessionConfig,
) -> None:
    user = new_user()
    browser = Browser("django")
    browser.post("/login", username=user.username)
    browser.post("/password", password="another password", keep="0")
    # The bump re-stamped this session in its own step (a second tab between the bump and
    # update_session_auth_hash is not refused for its epoch): Django's check of the
    # session's password hash ends it, as under Django's own engines.
    assert browser.get("/read") == {"user": None, "bound": None, "rejected": None, "data": {}}


def test_password_set_outside_a_request_ends_sessions(config: SessionConfig) -> None:
    user = new_user()
    browser = Browser("httpx")
    browser.post("/login", username=user.username)
    user.set_password("changed from a shell")
    user.save()
    assert browser.get("/read")["rejected"] == "epoch"


def test_a_rehash_by_django_itself_ends_nothing(config: SessionConfig) -> None:
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        user = new_user()
    browser = Browser("django")
    browser.post("/login", username=user.username)
    epoch = config.epochs.get(user.pk)
    upgraded = [f"{__name__}.QuickPBKDF2", "django.contrib.auth.hashers.MD5PasswordHasher"]
    with override_settings(PASSWORD_HASHERS=upgraded):
        assert user.check_password(PASSWORD)  # rehashes with PBKDF2 and saves the user
    assert user.password.startswith("pbkdf2_sha256$")
    assert config.epochs.get(user.pk) == epoch
    assert browser.get("/read")["rejected"] is None


def test_saving_a_user_without_a_new_password_ends_nothing(config: SessionConfig) -> None:
    user = new_user()
    browser = Browser("django")
    browser.post("/login", username=user.username)
    user.first_name = "Ada"
    user.save()
    assert browser.get("/read")["user"] == user.username


def test_the_session_behind_request_session(config: SessionConfig) -> None:
    store = SessionStore()
    session = store.as_session()
    session["a"] = 1
    assert store.modified and store["a"] == 1
    store.save()
    assert SessionStore(store.session_key).as_session().data == {"a": 1}


def test_logout_others_from_request_session(config: SessionConfig) -> None:
    user = new_user()
    here, elsewhere = Browser("django"), Browser("django")
    for browser in (here, elsewhere):
        browser.post("/login", username=user.username)
    here.post("/logout-others")
    assert here.get("/read")["user"] == user.username
    seen = elsewhere.get("/read")
    assert seen["rejected"] == "epoch", seen


def test_custom_user_model(config: SessionConfig) -> None:
    with override_settings(AUTH_USER_MODEL="django_native.Member"):
        assert get_user_model() is Member
        member = Member(email=f"m{next(_names)}-{time.time_ns()}@example.com")
        member.set_password(PASSWORD)
        member.save()
        browser, other = Browser("django"), Browser("httpx")
        for each in (browser, other):
            assert each.post("/login", username=member.email)["user"] == member.email
        assert browser.get("/read")["bound"] == str(member.pk)  # a UUID, as text

        member.set_password("new")
        member.save()
        assert other.get("/read")["rejected"] == "epoch"

        browser = Browser("django")
        member.set_password(PASSWORD)
        member.save()
        browser.post("/login", username=member.email)
        invalidate_user(member)
        assert browser.get("/read")["rejected"] == "epoch"


def test_django_test_client_login_helpers(config: SessionConfig, key_prefix: str) -> None:
    user = new_user()
    client = Client()
    client.force_login(user)
    assert client.get("/read").json()["user"] == user.username
    assert client.login(username=user.username, password=PASSWORD)
    assert client.get("/read").json()["bound"] == str(user.pk)
    client.logout()
    assert session_keys(key_prefix) == []


def test_a_cookie_we_did_not_sign_is_never_looked_up(config: SessionConfig) -> None:
    foreign = sessions(secret_key=OTHER_SECRET, redis_url=REDIS_URL).core.codec.encode(new_ref())
    for value in ("0" * 32, "not ours", foreign):
        store = SessionStore(value)
        assert store.session_key is None
        assert store.is_empty()


# -- the session API, sync and async -------------------------------------------------------


def test_session_api(config: SessionConfig, key_prefix: str) -> None:
    store = SessionStore()
    store["a"] = 1
    store.setdefault("b", [1, 2])
    store.update({"c": {"d": True}})
    assert store.session_key is None, "a session gets its key when it is first saved"
    store.save()
    key = store.session_key
    assert key is not None and config.core.codec.decode(key) is not None
    assert store.exists(key)

    again = SessionStore(key)
    assert dict(again.items()) == {"a": 1, "b": [1, 2], "c": {"d": True}}
    assert again.pop("c") == {"d": True}
    with pytest.raises(TypeError, match="'when'"):
        again["when"] = timezone.now()
    again.cycle_key()
    again.save()
    assert again.session_key not in (None, key)
    assert not again.exists(key), "cycle_key() deletes the old key"
    assert SessionStore(again.session_key)["b"] == [1, 2]

    again.flush()
    assert again.session_key is None and again.is_empty()
    assert session_keys(key_prefix) == []


@needs_async_session_api
@pytest.mark.anyio
async def test_async_session_api(config: SessionConfig, key_prefix: str) -> None:
    store = SessionStore()
    await store.aset("a", 1)
    assert await store.asetdefault("b", 2) == 2
    await store.aupdate({"c": 3})
    await store.asave()
    key = store.session_key
    assert key is not None and await store.aexists(key)

    again = SessionStore(key)
    assert await again.aget("a") == 1
    assert await again.ahas_key("b")
    assert sorted(await again.akeys()) == ["a", "b", "c"]
    assert await again.apop("c") == 3
    assert dict(await again.aitems()) == {"a": 1, "b": 2}
    assert sorted(await again.avalues()) == [1, 2]
    await again.aset_test_cookie()
    assert await again.atest_cookie_worked()
    await again.acycle_key()
    await again.asave()
    assert again.session_key != key
    assert not await again.aexists(key)

    await again.aflush()
    assert again.session_key is None
    assert session_keys(key_prefix) == []


def test_expiry(config: SessionConfig, key_prefix: str) -> None:
    store = SessionStore()
    store["a"] = 1
    assert store.get_expiry_age() == config.core.timing.lifetime
    store.save()

    loaded = SessionStore(store.session_key)
    assert (
        config.core.timing.lifetime - 2
        <= loaded.get_expiry_age()
        <= loaded.get_session_cookie_age()
    )
    assert not loaded.get_expire_at_browser_close()
    loaded.set_expiry(0)
    assert loaded.get_expire_at_browser_close()
    loaded.set_expiry(timedelta(hours=1))
    assert 3590 <= loaded.get_expiry_age() <= 3600
    expiry_date = loaded.get_expiry_date()
    assert timedelta(minutes=59) < expiry_date - timezone.now() <= timedelta(hours=1)

    loaded.set_expiry(timezone.now() - timedelta(seconds=1))
    loaded.save()
    expired = SessionStore(loaded.session_key)
    assert expired.get("a") is None, "a passed set_expiry() date ends the session"
    assert expired.session_key is None
    assert session_keys(key_prefix) == []


def test_expiry_after_inactivity(
    config: SessionConfig, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = clock_of(monkeypatch, django_engine)
    store = SessionStore()
    store["a"] = 1
    store.set_expiry(1)
    store.save()
    assert SessionStore(store.session_key).get("a") == 1
    later.advance(1.05)
    assert SessionStore(store.session_key).get("a") is None
    assert session_keys(key_prefix) == []


@needs_async_session_api
@pytest.mark.anyio
async def test_async_expiry_methods(config: SessionConfig) -> None:
    store = SessionStore()
    await store.aset("a", 1)
    await store.aset_expiry(300)
    assert await store.aget_expiry_age() == 300
    assert not await store.aget_expire_at_browser_close()
    assert timedelta(seconds=299) < await store.aget_expiry_date() - timezone.now()


def test_clearsessions_is_a_no_op_that_says_why(config: SessionConfig, key_prefix: str) -> None:
    store = SessionStore()
    store["a"] = 1
    store.save()
    SessionStore.clear_expired()
    output = StringIO()
    call_command("clearsessions", stdout=output)
    assert CLEAR_EXPIRED_REASON in output.getvalue()
    assert SessionStore(store.session_key)["a"] == 1


# -- configuration, cost and migration ------------------------------------------------------


def test_defaults_come_from_django_settings(project: None, key_prefix: str) -> None:
    with override_settings(
        SESSION_MIDDLEWARE={"redis_url": REDIS_URL, "key_prefix": key_prefix},
        SESSION_COOKIE_AGE=600,
    ):
        config = get_config()
        assert config.core.timing.lifetime == 600
        assert config.core.codec.name == COOKIE
        store = SessionStore()
        store["a"] = 1
        store.save()
        from django.conf import settings

        signed_with_secret_key = sessions(
            secret_key=settings.SECRET_KEY, redis_url=REDIS_URL, key_prefix=key_prefix
        )
        assert signed_with_secret_key.core.codec.decode(store.session_key) is not None
    from django.core.exceptions import ImproperlyConfigured

    with (
        override_settings(SESSION_MIDDLEWARE={"secret_key": ""}),
        pytest.raises(ImproperlyConfigured, match="secret_key must not be empty"),
    ):
        get_config()


def test_a_read_costs_one_round_trip(project: None, key_prefix: str) -> None:
    counter = Counter()
    client = counted_sync_client(counter)
    config = sessions(secret_key=SECRET, redis=client, key_prefix=key_prefix)
    user = new_user()
    with override_settings(SESSION_MIDDLEWARE=config):
        browser = Browser("httpx")
        counter.reset()
        browser.post("/login", username=user.username)
        assert counter.round_trips == 1, counter.commands
        counter.reset()
        assert browser.get("/read")["user"] == user.username
        assert counter.round_trips == 1, counter.commands
    client.close()


@pytest.mark.parametrize("previous", ["db", "signed_cookies"])
def test_sessions_of_the_previous_engine_are_imported(
    previous: str, project: None, key_prefix: str
) -> None:
    user = new_user()
    options = {"secret_key": SECRET, "redis_url": REDIS_URL, "key_prefix": key_prefix}
    engine = f"django.contrib.sessions.backends.{previous}"
    with override_settings(SESSION_ENGINE=engine):
        before = Browser("django")
        before.post("/put", key="cart", value="plums")
        before.post("/login", username=user.username)
        old_key = before.cookie
        assert old_key is not None
        if previous == "db":
            assert DatabaseSessionStore().exists(old_key)

    with override_settings(SESSION_MIDDLEWARE=options):
        logged_out = Browser("django", cookie=old_key).get("/read")
        assert logged_out["user"] is None, "without an import, users log in again once"

    with override_settings(SESSION_MIDDLEWARE=options, SESSION_MIDDLEWARE_IMPORT_FROM=engine):
        after = Browser("django", cookie=old_key)
        assert after.get("/read")["user"] == user.username
        assert after.cookie != old_key
        assert not DatabaseSessionStore().exists(old_key), "the old record is deleted"
        assert after.get("/read") == {
            "user": user.username,
            "bound": str(user.pk),
            "rejected": None,
            "data": {"cart": "plums"},
        }


def test_unreachable_redis_fails_closed_and_keeps_the_cookie(project: None) -> None:
    down = {"secret_key": SECRET, "redis_url": "redis://127.0.0.1:1/0", "redis_timeout": 0.5}
    with override_settings(SESSION_MIDDLEWARE=down):
        cookie = get_config().core.codec.encode(new_ref())
        client = Client(raise_request_exception=False)
        client.cookies[COOKIE] = cookie
        response = client.get("/read")
        assert response.status_code == 500
        assert COOKIE not in response.cookies, "Redis being down must not log anyone out"
        with pytest.raises(StoreUnavailable):
            SessionStore(cookie).get("a")


@pytest.mark.parametrize("failing", ["read", "write"])
def test_the_503_middleware_answers_an_outage(failing: str, project: None) -> None:
    down = {"secret_key": SECRET, "redis_url": "redis://127.0.0.1:1/0", "redis_timeout": 0.5}
    middleware = [
        "session_middleware.django.middleware.SessionMiddleware",
        *PROJECT["MIDDLEWARE"][1:],
    ]
    with override_settings(SESSION_MIDDLEWARE=down, MIDDLEWARE=middleware):
        client = Client(raise_request_exception=False)
        if failing == "read":
            client.cookies[COOKIE] = get_config().core.codec.encode(new_ref())
            response = client.get("/read")
        else:
            response = client.post("/put", {"key": "a", "value": "1"})
        assert response.status_code == 503
        assert response.content == BODY and response["retry-after"] == "5"
        assert COOKIE not in response.cookies


def new_ref() -> CookieRef:
    return CookieRef(new_anonymous_tag(), new_session_id())


def test_the_middleware_keeps_caches_from_storing_a_new_cookie(config: SessionConfig) -> None:
    middleware = [
        "session_middleware.django.middleware.SessionMiddleware",
        *PROJECT["MIDDLEWARE"][1:],
    ]
    with override_settings(MIDDLEWARE=middleware):
        client = Client()
        stored = client.post("/put", {"key": "a", "value": "1"})
        assert COOKIE in stored.cookies and stored["cache-control"] == "no-store"
        read = client.get("/read")
        assert COOKIE not in read.cookies and not read.has_header("cache-control")
        assert "Cookie" in read["vary"]
    plain = Client().post("/put", {"key": "a", "value": "1"})  # Django's own middleware
    assert COOKIE in plain.cookies and not plain.has_header("cache-control")


# -- a request in flight cannot undo an ending --------------------------------------------

_held = {"loaded": threading.Event(), "release": threading.Event()}


def held(request: HttpRequest, action: str) -> JsonResponse:
    user = request.user
    assert user.is_authenticated  # the session is loaded here
    _held["loaded"].set()
    assert _held["release"].wait(10)
    if action == "cycle_key":
        request.session.cycle_key()  # moves the stored session at once, as Django's backends
    elif action == "login":
        login(request, user)  # the same user again: nothing changes
    else:
        request.session["late"] = "1"
    return JsonResponse({})


urlpatterns += [path("held/<str:action>", held)]


@pytest.mark.parametrize("what", ["invalidate", "revoke", "delete"])
@pytest.mark.parametrize("action", ["cycle_key", "login", "put"])
def test_a_held_request_cannot_undo_an_ending(
    config: SessionConfig, what: str, action: str
) -> None:
    _held["loaded"].clear()
    _held["release"].clear()
    user = new_user()
    thief, owner = Browser("httpx"), Browser("httpx")
    thief.post("/login", username=user.username)
    stolen = thief.cookie
    user_id = str(user.pk)
    (listed,) = config.list_sessions(user_id)
    responses: list[Any] = []
    worker = threading.Thread(target=lambda: responses.append(thief.client.get(f"/held/{action}")))
    worker.start()
    assert _held["loaded"].wait(10)
    if what == "revoke":
        assert config.revoke_session(user_id, listed.handle)
    else:
        config.invalidate_user(user_id, delete=what == "delete")
    owner.post("/login", username=user.username)
    _held["release"].set()
    worker.join(10)
    (response,) = responses
    # A write finds the session ended: SessionInterrupted (400), as Django's own backends.
    # A refused cycle_key() issues no session (the response clears the cookie), and login()
    # of the user already logged in changes nothing.
    assert response.status_code == (400 if action == "put" else 200)
    assert owner.get("/read")["user"] == user.username
    for cookie in {stolen, thief.cookie} - {None}:
        assert Browser("httpx", cookie).get("/read")["user"] is None
    assert len(config.list_sessions(user_id)) == 1


def test_session_events_reach_django_as_a_signal(config: SessionConfig) -> None:
    from session_middleware.django.signals import session_event

    received: list[Any] = []

    def on_event(sender: Any, event: Any, **kwargs: Any) -> None:
        received.append((sender, event.kind, event.user_id))

    session_event.connect(on_event)
    try:
        user = new_user()
        browser = Browser("httpx")
        browser.post("/login", username=user.username)
        invalidate_user(user)
    finally:
        session_event.disconnect(on_event)
    assert received == [
        (SessionStore, "login", str(user.pk)),
        (SessionStore, "invalidate", str(user.pk)),
    ]


def test_an_expiry_past_the_lifetime_is_reported_as_capped(config: SessionConfig) -> None:
    from django.conf import settings

    store = SessionStore()
    store["a"] = 1
    store.set_expiry(settings.SESSION_COOKIE_AGE * 10)
    assert store.get_expiry_age() == store.get_session_cookie_age() <= settings.SESSION_COOKIE_AGE
    store.set_expiry(60)
    assert store.get_expiry_age() == 60


def test_a_password_change_saved_before_its_commit_keeps_this_device(
    config: SessionConfig,
) -> None:
    user = new_user()
    here, elsewhere = Browser("django"), Browser("httpx")
    for browser in (here, elsewhere):
        browser.post("/login", username=user.username)

    here.post("/password-in-a-transaction", password="a new password")

    assert here.get("/read")["user"] == user.username, "the device that changed it stays"
    seen = elsewhere.get("/read")
    assert seen["rejected"] == "epoch", seen
