"""The engine's SessionConfig, built once per process from Django settings.

``SESSION_MIDDLEWARE`` holds the keywords of ``sessions(...)`` (a dict), or a ready
SessionConfig. Left out of the dict: ``secret_key`` defaults to Django's SECRET_KEY
(then SECRET_KEY_FALLBACKS, so Django's key rotation keeps sessions valid) and
``max_age`` to SESSION_COOKIE_AGE.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from ..clients import ConfigurationError
from ..config import SessionConfig

SETTING = "SESSION_MIDDLEWARE"
_SOURCES = frozenset(
    {SETTING, "SECRET_KEY", "SECRET_KEY_FALLBACKS", "SESSION_COOKIE_NAME", "SESSION_COOKIE_AGE"}
)

_lock = threading.Lock()
_config: SessionConfig | None = None


def get_config() -> SessionConfig:
    """The process's SessionConfig, built at first use."""
    global _config
    config = _config
    if config is None:
        with _lock:
            if _config is None:
                _config = build_config()
            config = _config
    return config


def build_config() -> SessionConfig:
    config = _build()
    try:
        config.check_interface("wsgi")  # Django's SessionMiddleware saves synchronously
    except ConfigurationError as error:
        raise ImproperlyConfigured(f"{SETTING}: {error}") from error
    return config


def _build() -> SessionConfig:
    value = getattr(settings, SETTING, None)
    if isinstance(value, SessionConfig):
        return value
    if value is not None and not isinstance(value, dict):
        raise ImproperlyConfigured(
            f"{SETTING} must be a dict of sessions(...) keywords or a SessionConfig"
        )
    options: dict[str, Any] = dict(value or {})
    options.setdefault("session_cookie", settings.SESSION_COOKIE_NAME)
    options.setdefault("max_age", settings.SESSION_COOKIE_AGE)
    from_django = "secret_key" not in options
    if from_django:
        options["secret_key"] = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    try:
        return SessionConfig(**options)
    except ConfigurationError as error:
        hint = (
            f" (the key comes from SECRET_KEY; set {SETTING}['secret_key'] to use another)"
            if from_django
            else ""
        )
        raise ImproperlyConfigured(f"{SETTING}: {error}{hint}") from error


def _reset(*, setting: str, **kwargs: Any) -> None:
    global _config
    if setting in _SOURCES:
        with _lock:
            _config = None


setting_changed.connect(_reset, dispatch_uid="session_middleware.django.conf")
