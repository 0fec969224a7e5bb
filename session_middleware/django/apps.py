"""The Django app: installing it connects the auth integration at start-up, so password
changes made outside a request (``manage.py changepassword``, a shell) end sessions too,
and gives ``clearsessions`` an explanation instead of an error."""

from __future__ import annotations

from django.apps import AppConfig


class SessionMiddlewareConfig(AppConfig):  # type: ignore[misc]
    name = "session_middleware.django"
    label = "session_middleware"
    verbose_name = "Sessions in Redis"
