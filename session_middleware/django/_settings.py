"""The engine's SessionConfig, built once per process from Django settings.

``SESSION_MIDDLEWARE`` holds the keywords of ``sessions(...)`` (a dict), or a ready
SessionConfig. Left out of the dict: ``secret_key`` defaults to Django's SECRET_KEY
(then SECRET_KEY_FALLBACKS, so Django's key rotation keeps sessions valid), ``max_age``
to SESSION_COOKIE_AGE, and the cookie's name, Secure, Domain, Path and SameSite to
Django's SESSION_COOKIE_* settings, from which Django's SessionMiddleware builds it.

Under the engine, the configuration refuses to build while the system checks find an
error in the session cookie settings (_checks.py): no request is served with a session
cookie that is readable by scripts, or one browsers drop.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from ..config import SessionConfig
from ..errors import ConfigurationError
from ._checks import SETTING, cookie_errors, in_use

__all__ = ["SETTING", "build_config", "get_config"]

_FROM_DJANGO = {
    "session_cookie": "SESSION_COOKIE_NAME",
    "max_age": "SESSION_COOKIE_AGE",
    "https_only": "SESSION_COOKIE_SECURE",
    "domain": "SESSION_COOKIE_DOMAIN",
    "path": "SESSION_COOKIE_PATH",
}
_SOURCES = frozenset(
    {
        SETTING,
        "SECRET_KEY",
        "SECRET_KEY_FALLBACKS",
        "SESSION_ENGINE",
        "SESSION_COOKIE_HTTPONLY",
        "SESSION_COOKIE_SAMESITE",
        *_FROM_DJANGO.values(),
    }
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
    errors = cookie_errors() if in_use() else []
    if errors:
        found = "; ".join(f"{error.msg} ({error.id})" for error in errors)
        raise ImproperlyConfigured(f"the session cookie settings are unsafe: {found}")
    config = assemble()
    from .signals import send

    config.listeners.add(send)  # session_event, Django's way to hear the lifecycle
    return config


def assemble() -> SessionConfig:
    """The SessionConfig the settings describe, checked for Django (no listener, not
    kept): ImproperlyConfigured, caused by the ConfigurationError, if it cannot serve."""
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
    for keyword, name in _FROM_DJANGO.items():
        options.setdefault(keyword, getattr(settings, name))
    same_site = settings.SESSION_COOKIE_SAMESITE
    if isinstance(same_site, str) and same_site.lower() in ("lax", "strict", "none"):
        options.setdefault("same_site", same_site.lower())
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


setting_changed.connect(_reset, dispatch_uid="session_middleware.django._settings")
