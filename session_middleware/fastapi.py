"""FastAPI dependencies: the request's session, and the logged-in user.

    from session_middleware.fastapi import CurrentSession, CurrentUserId

    @app.get("/profile")
    async def profile(user_id: CurrentUserId, session: CurrentSession) -> dict[str, object]:
        ...

They need the session layer on the app (``app.add_middleware(SessionMiddleware, ...)`` or
``app = sessions(...)(app)``) and work in HTTP and WebSocket endpoints alike.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, WebSocketException, status
from starlette.requests import HTTPConnection

from ._protocol.key_layout import UserId
from ._request_session import get_session
from .session import Session

NOT_LOGGED_IN = "Not logged in"
SESSION_ENDED = "Your session has ended; please log in again"
CHALLENGE = {"WWW-Authenticate": "Session"}


def current_session(connection: HTTPConnection) -> Session:
    """The request's session (``Depends(current_session)``)."""
    return get_session(connection)


CurrentSession = Annotated[Session, Depends(current_session)]
"""A parameter typed ``CurrentSession`` receives the request's Session."""


def current_user_id(session: CurrentSession, connection: HTTPConnection) -> UserId:
    """The logged-in user's id; a 401 response when nobody is logged in.

    The 401 carries ``WWW-Authenticate: Session`` and a detail saying whether the session
    was ended by an epoch change ("log in again") or there was no login at all. A
    WebSocket is closed with code 1008 (policy violation) and that reason instead.
    """
    user_id = session.user_id
    if user_id is None:
        ended = connection.scope.get("session_rejected") == "epoch"
        detail = SESSION_ENDED if ended else NOT_LOGGED_IN
        if connection.scope["type"] == "websocket":
            raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason=detail)
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED, detail=detail, headers=CHALLENGE
        )
    return user_id


CurrentUserId = Annotated[UserId, Depends(current_user_id)]
"""A parameter typed ``CurrentUserId`` receives the logged-in user's id, or the request
is answered 401."""

__all__ = ["CurrentSession", "CurrentUserId", "current_session", "current_user_id"]
