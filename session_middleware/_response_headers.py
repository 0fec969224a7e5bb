"""The headers a response gains from its session: the cookie and what keeps caches honest."""

from __future__ import annotations

from collections.abc import Iterable


def session_headers(
    existing: Iterable[tuple[str, str]], set_cookie: str | None, depends_on_session: bool
) -> list[tuple[str, str]]:
    """Headers to add to a response, given the ones the app set (names in any case).

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
        if lowered == "cache-control":
            has_cache_control = True
        elif lowered == "vary":
            tokens = {token.strip().lower() for token in value.split(",")}
            varies = varies or "cookie" in tokens or "*" in tokens
    added: list[tuple[str, str]] = []
    if set_cookie is not None:
        added.append(("set-cookie", set_cookie))
        if not has_cache_control:
            added.append(("cache-control", "no-store"))
    if not varies:
        added.append(("vary", "Cookie"))
    return added
