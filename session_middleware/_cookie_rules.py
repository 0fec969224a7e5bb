"""Which cookie attributes browsers take: the session cookie's name, path and domain
are checked against these rules when a configuration is built (and, under Flask, when
Flask's own cookie settings are read)."""

from __future__ import annotations

import re
from typing import NamedTuple

from .errors import ConfigurationError


def check_cookie(name: str, *, https_only: bool, path: str, domain: str | None) -> None:
    """Refuse a cookie browsers would drop or split: a name that is not an RFC 6265
    token, a path or domain holding a control character, a space or ';'; a
    __Host- or __Secure- name (browsers match the prefixes in any letter case) without
    Secure, and a __Host- one with a domain or off path '/'."""
    if not isinstance(name, str) or not name or not _TOKEN.fullmatch(name):
        raise ConfigurationError(
            f"the cookie name {name!r} is not a valid cookie name (RFC 6265): no space, "
            'control character or any of ( ) < > @ , ; : \\ " / [ ] ? = { }'
        )
    for setting, value in (("path", path), ("domain", domain)):
        unsafe = _UNSAFE[setting]
        if value is not None and (not isinstance(value, str) or unsafe.pattern.search(value)):
            raise ConfigurationError(f"the cookie {setting} {value!r} {unsafe.problem}")
    folded = name.lower()
    prefix = next((p for p in ("__Host-", "__Secure-") if folded.startswith(p.lower())), None)
    if prefix is not None and not https_only:
        raise ConfigurationError(f"a {prefix} cookie ({name!r}) needs https_only=True")
    if prefix == "__Host-" and (path != "/" or domain is not None):
        raise ConfigurationError("a __Host- cookie needs path='/' and no domain")


# RFC 6265 cookie-name: an RFC 2616 token (no control character, space or separator).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class _Unsafe(NamedTuple):
    """A cookie attribute's value that browsers mishandle, and what to say about it."""

    pattern: re.Pattern[str]
    problem: str


_UNSAFE = {
    "path": _Unsafe(
        re.compile(r"[^\x21-\x7e]|;"),
        "holds a space, ';', a control or a non-ASCII character (percent-encode it)",
    ),
    "domain": _Unsafe(
        re.compile(r"[^\x21-\x7e]|[;,]"),
        "holds a space, ';', ',', a control or a non-ASCII character (use its IDNA form)",
    ),
}
