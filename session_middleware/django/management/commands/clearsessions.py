"""``manage.py clearsessions``: says why there is nothing to clear with this engine."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.sessions.management.commands import clearsessions

from ...engine import CLEAR_EXPIRED_REASON, SessionStore


class Command(clearsessions.Command):  # type: ignore[misc]
    """Django's clearsessions, which with this engine explains that Redis expires
    sessions itself."""

    def handle(self, **options: Any) -> None:
        store = import_module(settings.SESSION_ENGINE).SessionStore
        if not (isinstance(store, type) and issubclass(store, SessionStore)):
            super().handle(**options)
            return
        store.clear_expired()
        self.stdout.write(CLEAR_EXPIRED_REASON)
