"""Which session cookie a Flask app gets under init_app.

Each attribute comes from ``sessions(...)`` where it was given there, else from Flask's
``SESSION_COOKIE_*`` where the app's config sets it, else from the default; when both set
it and they differ, ``sessions()`` wins and a warning is logged once. A cookie browsers
would drop is refused on the settings in force.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response

from ._cookie_rules import check_cookie
from ._protocol.cookies import CookieCodec
from .errors import ConfigurationError

logger = logging.getLogger("session_middleware")

# Werkzeug renders Partitioned from 3.1 on (Flask 3.0 runs on Werkzeug 3.0).
_CAN_PARTITION = "partitioned" in inspect.signature(Response.set_cookie).parameters


def _flask_same_site(config: Mapping[str, Any]) -> str | None:
    value = config.get("SESSION_COOKIE_SAMESITE")
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in ("lax", "strict", "none"):
        # A ValueError, as Werkzeug raises when Flask's own interface renders it.
        raise ValueError(
            f"SESSION_COOKIE_SAMESITE must be 'Lax', 'Strict', 'None' or None, not {value!r}"
        )
    return value.lower()


@dataclass(frozen=True, slots=True)
class _Setting:
    """A cookie keyword of sessions() and the Flask setting it meets: how Flask reads that
    setting from a config, and the configuration's value."""

    flask_name: str
    read_flask: Callable[[Mapping[str, Any]], Any]
    given: Callable[[CookieCodec], Any]


_SETTINGS = {
    "session_cookie": _Setting(
        "SESSION_COOKIE_NAME", lambda c: c.get("SESSION_COOKIE_NAME"), lambda codec: codec.name
    ),
    "domain": _Setting(
        "SESSION_COOKIE_DOMAIN",
        lambda c: c.get("SESSION_COOKIE_DOMAIN") or None,
        lambda codec: codec.domain,
    ),
    "path": _Setting(
        "SESSION_COOKIE_PATH",
        lambda c: c.get("SESSION_COOKIE_PATH") or c.get("APPLICATION_ROOT") or "/",
        lambda codec: codec.path,
    ),
    "https_only": _Setting(
        "SESSION_COOKIE_SECURE",
        lambda c: bool(c.get("SESSION_COOKIE_SECURE")),
        lambda codec: codec.secure,
    ),
    "same_site": _Setting(
        "SESSION_COOKIE_SAMESITE", _flask_same_site, lambda codec: codec.same_site
    ),
    "partitioned": _Setting(
        "SESSION_COOKIE_PARTITIONED",  # Flask 3.1+
        lambda c: bool(c.get("SESSION_COOKIE_PARTITIONED")),
        lambda codec: codec.partitioned,
    ),
}
_FLASK_SETTINGS = ("APPLICATION_ROOT", *(setting.flask_name for setting in _SETTINGS.values()))


@dataclass(frozen=True, slots=True)
class CookieSettings:
    """One app's session cookie, as `CookieResolver.settings` resolves it."""

    name: str
    domain: str | None
    path: str
    secure: bool
    same_site: str  # as Werkzeug spells it: "Lax", "Strict" or "None"
    partitioned: bool


class CookieResolver:
    """The cookie settings of one app, resolved again whenever its config changes."""

    def __init__(self, codec: CookieCodec, given_settings: frozenset[str]) -> None:
        self._codec = codec
        self._given_settings = given_settings
        self._warned: set[str] = set()
        # The last resolution, with what it was resolved from (apps may change settings).
        self._resolved: tuple[tuple[Any, ...], CookieSettings] | None = None

    def settings(self, app: Flask) -> CookieSettings:
        """The app's session cookie: each attribute as given to ``sessions(...)``, else as
        Flask's ``SESSION_COOKIE_*`` set it, else the default. ConfigurationError for a
        cookie browsers would drop (a ``__Host-`` or ``__Secure-`` name that is not Secure,
        a ``__Host-`` one with a Domain or a Path other than /)."""
        source = tuple(app.config.get(setting) for setting in _FLASK_SETTINGS)
        resolved = self._resolved
        if resolved is not None and resolved[0] == source:
            return resolved[1]
        values: dict[str, Any] = {}
        for keyword, setting in _SETTINGS.items():
            given, flask_value = setting.given(self._codec), setting.read_flask(app.config)
            set_in_flask = flask_value != setting.read_flask(app.default_config)
            if keyword in self._given_settings:
                values[keyword] = given
                if set_in_flask and flask_value != given:
                    self._warn_conflict(keyword, given, setting.flask_name, flask_value)
            else:
                values[keyword] = flask_value if set_in_flask else given
        name = values["session_cookie"]
        try:
            check_cookie(
                name, https_only=values["https_only"], path=values["path"], domain=values["domain"]
            )
        except ConfigurationError as error:
            raise ConfigurationError(
                f"the session cookie {name!r}: {error} (from sessions(...), else Flask's "
                "SESSION_COOKIE_SECURE, SESSION_COOKIE_PATH, SESSION_COOKIE_DOMAIN)"
            ) from error
        if values["partitioned"] and not _CAN_PARTITION:
            raise ConfigurationError("a partitioned session cookie needs Werkzeug 3.1 or newer")
        settings = CookieSettings(
            name=name,
            domain=values["domain"],
            path=values["path"],
            secure=values["https_only"],
            same_site=values["same_site"].capitalize(),
            partitioned=values["partitioned"],
        )
        self._resolved = (source, settings)
        return settings

    def _warn_conflict(self, keyword: str, given: Any, setting: str, flask_value: Any) -> None:
        if keyword in self._warned:
            return
        self._warned.add(keyword)
        logger.warning(
            "sessions(%s=%r) and Flask's %s = %r differ: the session cookie follows sessions()",
            keyword,
            given,
            setting,
            flask_value,
        )


__all__ = ["CookieResolver", "CookieSettings"]
