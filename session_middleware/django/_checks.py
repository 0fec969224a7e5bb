"""Django system checks: the session cookie Django builds must keep the package's promises.

Under ``SESSION_ENGINE = "session_middleware.django"`` Django's SessionMiddleware builds
the cookie from the ``SESSION_COOKIE_*`` settings, so HttpOnly, Secure, SameSite and the
``__Host-``/``__Secure-`` rules are Django's settings, not the package's. These checks
(registered by the app config; ``manage.py check`` runs them) report what would weaken
them. The errors are enforced as well: the engine's configuration refuses to build while
any is present (see _settings.py), so a project that skips the checks still cannot serve.

Errors (E) and warnings (W), with their ids:

- session_middleware.E001: SESSION_COOKIE_HTTPONLY is False.
- session_middleware.W002: SESSION_COOKIE_SECURE is False while DEBUG is False.
- session_middleware.E003: SESSION_COOKIE_SAMESITE is "None" without SESSION_COOKIE_SECURE.
- session_middleware.E004: a ``__Host-`` name without Secure, with a Domain, or off Path /.
- session_middleware.E005: a ``__Secure-`` name without Secure.
- session_middleware.W006: a cookie keyword in SESSION_MIDDLEWARE that Django's cookie
  ignores (it differs from the SESSION_COOKIE_* setting Django uses).
- session_middleware.W007: SESSION_SERIALIZER is not JSON (records are always JSON).
- session_middleware.W008: SESSION_MIDDLEWARE is set, but SESSION_ENGINE is another engine.
- session_middleware.E009: the settings cannot build a configuration: every error
  ``sessions(...)`` would raise with them (an unknown keyword, a bad Redis URL...), with
  its hint.
- session_middleware.E010: Django's own SessionMiddleware is in MIDDLEWARE beside this
  package's (which is Django's, answering 503 when Redis is down): keep one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from ..errors import ConfigurationError

ENGINE = "session_middleware.django"
SETTING = "SESSION_MIDDLEWARE"
JSON_SERIALIZER = "django.contrib.sessions.serializers.JSONSerializer"
DJANGO_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
OUR_MIDDLEWARE = "session_middleware.django.middleware.SessionMiddleware"

# sessions(...) keywords about the cookie, and what Django's cookie takes them from.
_COOKIE_KEYWORDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "session_cookie": ("SESSION_COOKIE_NAME", str),
    "https_only": ("SESSION_COOKIE_SECURE", bool),
    "domain": ("SESSION_COOKIE_DOMAIN", lambda value: value or None),
    "path": ("SESSION_COOKIE_PATH", str),
    "same_site": ("SESSION_COOKIE_SAMESITE", lambda value: str(value).lower() if value else None),
}


def in_use() -> bool:
    """True when the engine is Django's SESSION_ENGINE."""
    return bool(settings.SESSION_ENGINE == ENGINE)


def session_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The registered check: every finding about the session settings."""
    options = getattr(settings, SETTING, None)
    if not in_use():
        if options is None:
            return []
        return [
            *configuration_errors(),
            checks.Warning(
                f"{SETTING} is set, but SESSION_ENGINE is {settings.SESSION_ENGINE!r}: "
                "Django's sessions are not kept in Redis and not checked against epochs.",
                hint=f'Set SESSION_ENGINE = "{ENGINE}", or remove {SETTING} if only '
                "invalidate_user() is meant to use it.",
                id="session_middleware.W008",
            ),
        ]
    found = cookie_errors()
    # The cookie errors above stop the build too: report each once.
    return [
        *(found or configuration_errors()),
        *_middleware_errors(),
        *_cookie_warnings(),
        *_keyword_warnings(options),
    ]


def configuration_errors() -> list[checks.CheckMessage]:
    """Every error building the configuration from the settings would raise, as the
    first request would meet it."""
    from ._settings import assemble  # _settings reads the cookie checks from here

    try:
        assemble()
    except (TypeError, ValueError) as error:  # a value of the wrong type, raised as it is
        return [
            checks.Error(
                f"{SETTING}: {error}",
                hint=f"{SETTING} holds the keywords of session_middleware.sessions().",
                id="session_middleware.E009",
            )
        ]
    except ImproperlyConfigured as error:
        cause = error.__cause__
        hint = cause.hint if isinstance(cause, ConfigurationError) else None
        message = (
            f"{SETTING}: {cause.problem}"
            if isinstance(cause, ConfigurationError) and hint
            else str(error)
        )
        return [
            checks.Error(
                message,
                hint=hint or f"{SETTING} holds the keywords of session_middleware.sessions().",
                id="session_middleware.E009",
            )
        ]
    return []


def _middleware_errors() -> list[checks.CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    if DJANGO_MIDDLEWARE in middleware and OUR_MIDDLEWARE in middleware:
        return [
            checks.Error(
                f"MIDDLEWARE holds both {DJANGO_MIDDLEWARE} and {OUR_MIDDLEWARE}: the session "
                "would be loaded and saved twice, and a Redis outage reach Django's 500.",
                hint=f"Remove {DJANGO_MIDDLEWARE}: {OUR_MIDDLEWARE} is Django's, with the 503.",
                id="session_middleware.E010",
            )
        ]
    return []


def cookie_errors() -> list[checks.CheckMessage]:
    """The findings that make Django's session cookie unsafe or one browsers drop."""
    name = str(settings.SESSION_COOKIE_NAME)
    secure = bool(settings.SESSION_COOKIE_SECURE)
    found = []
    if not settings.SESSION_COOKIE_HTTPONLY:
        found.append(
            checks.Error(
                "SESSION_COOKIE_HTTPONLY is False: page scripts, and any script injected "
                "into a page, can read the session cookie.",
                hint="Remove the setting (Django's default is True); session_middleware "
                "sets HttpOnly on every session cookie.",
                id="session_middleware.E001",
            )
        )
    same_site = settings.SESSION_COOKIE_SAMESITE
    if isinstance(same_site, str) and same_site.lower() == "none" and not secure:
        found.append(
            checks.Error(
                'SESSION_COOKIE_SAMESITE = "None" without SESSION_COOKIE_SECURE: browsers '
                "drop such a cookie.",
                hint='Set SESSION_COOKIE_SECURE = True, or SameSite "Lax".',
                id="session_middleware.E003",
            )
        )
    if name.lower().startswith("__host-"):
        wrong = [
            what
            for what, bad in (
                ("SESSION_COOKIE_SECURE is False", not secure),
                ("SESSION_COOKIE_DOMAIN is set", bool(settings.SESSION_COOKIE_DOMAIN)),
                ("SESSION_COOKIE_PATH is not '/'", settings.SESSION_COOKIE_PATH != "/"),
            )
            if bad
        ]
        if wrong:
            found.append(
                checks.Error(
                    f"the session cookie {name!r} has the __Host- prefix, but "
                    f"{' and '.join(wrong)}: browsers drop it.",
                    hint="A __Host- cookie needs SESSION_COOKIE_SECURE = True, no "
                    "SESSION_COOKIE_DOMAIN and SESSION_COOKIE_PATH = '/'.",
                    id="session_middleware.E004",
                )
            )
    elif name.lower().startswith("__secure-") and not secure:
        found.append(
            checks.Error(
                f"the session cookie {name!r} has the __Secure- prefix, but "
                "SESSION_COOKIE_SECURE is False: browsers drop it.",
                hint="Set SESSION_COOKIE_SECURE = True.",
                id="session_middleware.E005",
            )
        )
    return found


def _cookie_warnings() -> list[checks.CheckMessage]:
    found = []
    if not settings.SESSION_COOKIE_SECURE and not settings.DEBUG:
        found.append(
            checks.Warning(
                "SESSION_COOKIE_SECURE is False while DEBUG is False: the session cookie "
                "is sent over plain HTTP, where anyone on the path can read it.",
                hint="Serve over HTTPS and set SESSION_COOKIE_SECURE = True (and "
                'SESSION_COOKIE_NAME = "__Host-sessionid").',
                id="session_middleware.W002",
            )
        )
    serializer = getattr(settings, "SESSION_SERIALIZER", JSON_SERIALIZER)
    if serializer != JSON_SERIALIZER:
        found.append(
            checks.Warning(
                f"SESSION_SERIALIZER is {serializer!r}, which session_middleware does not "
                "use: session data is stored as JSON, and a value JSON cannot hold raises "
                "TypeError.",
                hint="Remove SESSION_SERIALIZER.",
                id="session_middleware.W007",
            )
        )
    return found


def _keyword_warnings(options: Any) -> list[checks.CheckMessage]:
    if not isinstance(options, dict):
        return []
    found = []
    for keyword, value in options.items():
        if keyword == "partitioned":
            source, django_value, theirs = "Django", False, bool(value)
        elif keyword in _COOKIE_KEYWORDS:
            source, convert = _COOKIE_KEYWORDS[keyword]
            django_value, theirs = convert(getattr(settings, source)), convert(value)
        else:
            continue
        if theirs != django_value:
            found.append(
                checks.Warning(
                    f"{SETTING}[{keyword!r}] is {value!r}, but Django's SessionMiddleware "
                    f"builds the session cookie from {source}'s settings, which give "
                    f"{django_value!r}: the keyword has no effect on the cookie.",
                    hint=f"Remove {keyword!r} from {SETTING} and set {source} instead."
                    if source != "Django"
                    else "Django's session cookie has no Partitioned attribute.",
                    id="session_middleware.W006",
                )
            )
    return found
