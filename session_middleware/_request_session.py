"""get_session: the session of a request, whatever the framework."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .session import Session

# Where the WSGI driver and the Flask integration put the session, and why one was rejected.
SESSION_KEY = "session_middleware.session"
REJECTED_KEY = "session_middleware.rejected"
# Why an integration that is installed opened no session for the request (Flask: no key).
NO_SESSION_KEY = "session_middleware.no_session"


def get_session(request: Any) -> Session:
    """The session of a Starlette/FastAPI Request, Django HttpRequest, Flask request,
    ASGI scope or WSGI environ."""
    try:
        scope = getattr(request, "scope", None)
    except RuntimeError:  # a Flask proxy outside a request context
        scope = None
    if type(scope) is dict:  # a Starlette Request's ASGI scope: the one test most calls need
        session = scope.get("session")
        if isinstance(session, Session):
            return session
    for holder in _holders(request):
        session = holder.get("session") if "type" in holder else holder.get(SESSION_KEY)
        if isinstance(session, Session):
            return session
        reason = holder.get(NO_SESSION_KEY)
        if isinstance(reason, str):
            raise LookupError(f"no session on this request: {reason}")
    store = getattr(request, "__dict__", {}).get("session")  # Django's request.session
    as_session = getattr(store, "as_session", None)
    if callable(as_session):
        found = as_session()
        if isinstance(found, Session):
            return found
    raise LookupError(
        "no session on this request: wrap the app with sessions(...) "
        "or add SessionMiddleware before reading the session"
    )


def _holders(request: Any) -> list[Mapping[str, Any]]:
    if isinstance(request, Mapping):
        return [request]
    holders = []
    for attribute in ("scope", "environ"):
        try:
            value = getattr(request, attribute, None)
        except RuntimeError:  # a Flask proxy outside a request context
            value = None
        if isinstance(value, Mapping):
            holders.append(value)
    return holders
