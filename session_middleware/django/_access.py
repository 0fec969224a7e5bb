"""The typed way to the session of a Django request: ``request.session`` is typed as
Django's SessionBase, which knows nothing of ``rejected``, ``user_id`` or
``logout_others()``."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError
from .engine import SessionStore


def get_session(request: Any) -> SessionStore:
    """``request.session``, loaded: ``rejected`` then says whether the session the request
    came with was refused ("epoch": the user was signed out elsewhere), which it cannot
    say before the session is read."""
    store = _store(request)
    store.as_session()
    return store


async def aget_session(request: Any) -> SessionStore:
    """The async twin of get_session: loads the session on redis.asyncio."""
    store = _store(request)
    await store._aget_session()
    return store


def _store(request: Any) -> SessionStore:
    store = getattr(request, "session", None)
    if isinstance(store, SessionStore):
        return store
    if store is None:
        raise LookupError(
            "no session on this request: put session_middleware.django.middleware."
            "SessionMiddleware (or Django's) in MIDDLEWARE"
        )
    raise ConfigurationError(
        f"request.session is a {type(store).__module__}.{type(store).__name__}",
        'set SESSION_ENGINE = "session_middleware.django"',
    )
