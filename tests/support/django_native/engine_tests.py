"""What the Django tests of password changes share: their fixtures (the project, and the
engine's configuration with the epochs in Redis or in SQL), and a browser over Django's
WSGI handler."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth import authenticate, login
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.http import HttpRequest, JsonResponse
from django.test.utils import override_settings

from session_middleware import SessionConfig, sessions
from session_middleware.epochs.sql import SQLEpochs

from .. import REDIS_URL, SECRET

COOKIE = "sessionid"
EPOCH_STORES = ["redis", "sql"]
PASSWORD = "correct horse battery"
HOLD = 10.0  # the longest a held view waits for its release


def whoami(request: HttpRequest) -> JsonResponse:
    """Who is signed in, as Django's auth says (it checks the session's password hash)."""
    user = request.user
    return JsonResponse({"user": user.get_username() if user.is_authenticated else None})


def sign_in(request: HttpRequest) -> JsonResponse:
    user = authenticate(request, username=request.POST["username"], password=PASSWORD)
    assert user is not None
    login(request, user)
    return JsonResponse({"user": user.get_username()})


@contextlib.contextmanager
def engine_config(store: str, key_prefix: str, tmp_path: Path) -> Iterator[SessionConfig]:
    """The engine's configuration, in force for the block, with the epochs in Redis
    ('redis') or in SQLite ('sql')."""
    from session_middleware.django._settings import get_config

    epochs = None
    if store == "sql":
        epochs = SQLEpochs.managed(f"sqlite:///{tmp_path}/epochs.db")
    configured = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix,
                          epochs=epochs)  # fmt: skip
    if epochs is not None:
        epochs.create_table()
    with override_settings(SESSION_MIDDLEWARE=configured):
        assert get_config() is configured
        yield configured
    configured.close()
    if epochs is not None:
        epochs.dispose()


def engine_fixtures(project_settings: dict[str, Any]) -> tuple[Any, Any]:
    """The fixtures `project` (module-scoped: these settings in force, the database
    migrated) and `config` (engine_config, once per store of EPOCH_STORES) of a module."""

    @pytest.fixture(scope="module")
    def project() -> Iterator[None]:
        with override_settings(**project_settings):
            call_command("migrate", verbosity=0)
            yield

    @pytest.fixture(params=EPOCH_STORES)
    def config(
        request: pytest.FixtureRequest, project: None, key_prefix: str, tmp_path: Path
    ) -> Iterator[SessionConfig]:
        with engine_config(request.param, key_prefix, tmp_path) as configured:
            yield configured

    return project, config


class Device:
    """One browser over WSGI: httpx on Django's WSGI handler."""

    def __init__(self, cookie: str | None = None) -> None:
        transport = httpx.WSGITransport(app=WSGIHandler())
        self.client = httpx.Client(transport=transport, base_url="http://testserver")
        if cookie is not None:
            self.client.cookies[COOKIE] = cookie

    @property
    def cookie(self) -> str | None:
        return self.client.cookies.get(COOKIE)  # type: ignore[no-any-return]

    def get(self, where: str) -> Any:
        response = self.client.get(where)
        assert response.status_code == 200, response.content
        return response.json()

    def who(self) -> str | None:
        return self.get("/whoami")["user"]  # type: ignore[no-any-return]

    def post(self, where: str, **data: str) -> httpx.Response:
        return self.client.post(where, data=data)
