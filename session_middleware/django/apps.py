"""The Django app: installing it connects the auth integration at start-up, so password
changes made outside a request (``manage.py changepassword``, a shell) end sessions too,
registers the system checks of the session settings (_checks.py), and gives
``clearsessions`` an explanation instead of an error."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class SessionMiddlewareConfig(AppConfig):  # type: ignore[misc]
    """The app that INSTALLED_APPS names: registers the checks of the session settings."""

    name = "session_middleware.django"
    label = "session_middleware"
    verbose_name = "Sessions in Redis"

    def ready(self) -> None:
        from ._checks import session_settings

        checks.register(session_settings, checks.Tags.security)
