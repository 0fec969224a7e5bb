"""A Django session emptied by a request behaves as under Django's own backends.

Django's SessionMiddleware saves a modified session that still has a key, even with no
data left, and sets its cookie; its database backend keeps the emptied session under that
key. This engine does the same: the cookie the response sets names a session that
exists. Each case runs against Django's database backend too, as the reference.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.http import HttpRequest, JsonResponse
from django.test import Client
from django.test.utils import override_settings
from django.urls import path

from .support import REDIS_URL, SECRET
from .support.django_native.settings import configure

configure()

from django.contrib.sessions.backends.db import SessionStore as DatabaseStore  # noqa: E402

from session_middleware.django import SessionStore  # noqa: E402

COOKIE = "sessionid"
ENGINES = {
    "session_middleware": "session_middleware.django",
    "django_db": "django.contrib.sessions.backends.db",
}
_values = itertools.count()


def put(request: HttpRequest) -> JsonResponse:
    request.session[request.POST["key"]] = request.POST["value"]
    return JsonResponse({})


def pop(request: HttpRequest) -> JsonResponse:
    request.session.pop(request.POST["key"])
    return JsonResponse({})


def read(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"data": dict(request.session.items())})


urlpatterns = [path("put", put), path("pop", pop), path("read", read)]


@pytest.fixture(params=list(ENGINES))
def engine(request: pytest.FixtureRequest, key_prefix: str) -> Iterator[str]:
    options = {"secret_key": SECRET, "redis_url": REDIS_URL, "key_prefix": key_prefix}
    with override_settings(
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["testserver"],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        SESSION_ENGINE=ENGINES[request.param],
        SESSION_MIDDLEWARE=options,
    ):
        call_command("migrate", verbosity=0)
        yield request.param


def exists(engine: str, key: str) -> bool:
    store = SessionStore() if engine == "session_middleware" else DatabaseStore()
    return bool(store.exists(key))


def test_an_emptied_session_is_stored_under_the_cookie_the_response_sets(engine: str) -> None:
    client = Client()
    client.post("/put", {"key": "a", "value": str(next(_values))})
    key = client.cookies[COOKIE].value
    assert exists(engine, key)

    emptied = client.post("/pop", {"key": "a"})
    assert emptied.status_code == 200
    sent = emptied.cookies[COOKIE]
    assert sent.value == key and sent["max-age"] != 0, "the response keeps the cookie"
    assert exists(engine, sent.value), "the cookie names a session that exists"

    again = client.get("/read")
    assert again.json() == {"data": {}}
    assert COOKIE not in again.cookies, "the emptied session is still valid: nothing to clear"
    client.post("/put", {"key": "b", "value": "2"})
    assert client.cookies[COOKIE].value == key, "it goes on under the same key"
    assert client.get("/read").json() == {"data": {"b": "2"}}
