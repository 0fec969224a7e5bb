"""``manage.py sessions list|revoke|invalidate``: the command line's user commands on the
project's own settings (SESSION_MIDDLEWARE, SECRET_KEY), the user named by primary key."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from session_middleware import SessionConfig

from .test_django_native import config, new_user, project  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("config")


def manage(*arguments: str) -> str:
    out = io.StringIO()
    call_command("sessions", *arguments, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def logged_in(user: Any, devices: int = 2) -> list[Client]:
    clients = [Client() for _ in range(devices)]
    for client in clients:
        client.force_login(user)
    return clients


def test_list_revoke_and_invalidate_by_primary_key(config: SessionConfig) -> None:  # noqa: F811
    user = new_user()
    logged_in(user)
    listed = json.loads(manage("--json", "list", str(user.pk)))
    assert len(listed) == 2
    assert "HANDLE" in manage("list", str(user.pk))

    manage("revoke", str(user.pk), listed[0]["handle"])
    assert len(config.list_sessions(str(user.pk))) == 1

    done = manage("invalidate", str(user.pk))
    assert "1 live session ended" in done and f"key prefix {config.keys.prefix!r}" in done
    assert config.list_sessions(str(user.pk)) == []


def test_a_user_with_nothing_in_the_store_is_not_reported_invalidated(
    config: SessionConfig,  # noqa: F811
) -> None:
    user = new_user()  # never logged in: no epoch, no session
    with pytest.raises(CommandError, match="nothing found") as refused:
        manage("invalidate", str(user.pk))
    assert refused.value.returncode == 1
    assert "--force" in str(refused.value)
    assert "anyway (--force)" in manage("invalidate", str(user.pk), "--force")
    assert config.user_state(str(user.pk)).has_epoch


def test_an_unknown_primary_key_or_handle_is_an_error() -> None:
    with pytest.raises(CommandError, match="no user has the primary key"):
        manage("list", "987654321")
    user = new_user()
    logged_in(user, devices=1)
    with pytest.raises(CommandError, match="no session 'not-a-handle' of user") as refused:
        manage("revoke", str(user.pk), "not-a-handle")
    assert refused.value.returncode == 1
