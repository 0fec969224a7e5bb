"""Django settings for the Django integration tests, safe to share between test modules.

`configure()` configures Django unless another module already did, and gives a project
configured without a database the tests' SQLite file: a file (not ``:memory:``) because
Django's ASGI handler runs sync code on other threads, which must see the same database.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import django
from django.conf import settings
from django.db import connections

from .. import SECRET

_DIRECTORY = tempfile.mkdtemp(prefix="sm-django-tests-")
atexit.register(shutil.rmtree, _DIRECTORY, ignore_errors=True)

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(Path(_DIRECTORY) / "db.sqlite3"),
    }
}
APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"]
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def engine_project(urlconf: str, **overrides: Any) -> dict[str, Any]:
    """override_settings' arguments for a project whose sessions use this package's engine
    and whose URLs are in `urlconf`, with `overrides` on top."""
    return {
        "INSTALLED_APPS": [
            "session_middleware.django",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
        ],
        "ROOT_URLCONF": urlconf,
        "ALLOWED_HOSTS": ["testserver"],
        "MIDDLEWARE": [
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        "SESSION_ENGINE": "session_middleware.django",
        "PASSWORD_HASHERS": FAST_HASHERS,
        **overrides,
    }


def configure() -> None:
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY=SECRET,
            ALLOWED_HOSTS=["testserver"],
            INSTALLED_APPS=APPS,
            DATABASES=DATABASES,
            USE_TZ=True,
            DEFAULT_AUTO_FIELD="django.db.models.AutoField",
            PASSWORD_HASHERS=FAST_HASHERS,
        )
    django.setup()
    engine = settings.DATABASES.get("default", {}).get("ENGINE", "django.db.backends.dummy")
    if engine.endswith("dummy"):
        # Configured by a module that needed no database: Django reads DATABASES once,
        # so the cached copy goes too.
        settings.DATABASES = DATABASES
        connections.__dict__.pop("settings", None)
        connections._settings = None
