"""The headers a response gains from its session: the cookie and what keeps caches honest."""

from __future__ import annotations

from collections.abc import Iterable

_CACHE_CONTROL = ("cache-control", b"cache-control")
_VARY = ("vary", b"vary")


def session_headers(
    existing: Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]],
    set_cookie: str | None,
    depends_on_session: bool,
) -> list[tuple[str, str]]:
    """Headers to add to a response, given the ones the app set (names in any case; as
    str, or as the latin-1 bytes of ASGI).

    A response that sets or clears the session cookie must never be stored by a cache
    (Cache-Control: no-store, unless the app chose its own policy); one that depends on
    the session varies with the Cookie header.
    """
    if set_cookie is None and not depends_on_session:
        return []
    has_cache_control = False
    varies = False
    for name, value in existing:
        lowered = name.lower()
        if lowered in _CACHE_CONTROL:
            has_cache_control = True
        elif lowered in _VARY:
            listed = value.decode("latin-1") if isinstance(value, bytes) else value
            tokens = {token.strip().lower() for token in listed.split(",")}
            varies = varies or "cookie" in tokens or "*" in tokens
    added: list[tuple[str, str]] = []
    if set_cookie is not None:
        added.append(("set-cookie", set_cookie))
        if not has_cache_control:
            added.append(("cache-control", "no-store"))
    if not varies:
        added.append(("vary", "Cookie"))
    return added
