"""Tiny raw ASGI and WSGI apps whose routes do one session operation each."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from session_middleware import Session, get_session


def act(session: Session, path: str, query: dict[str, str]) -> None:
    """Do what the path says to the session."""
    if path == "/login":
        session.login(query["user"])
        if query.get("others") == "1":  # a login that also logs the user's others out
            session.logout_others()
    elif path == "/logout":
        session.logout()
    elif path == "/others":
        session.logout_others()
    elif path == "/set":
        session[query["key"]] = query["value"]
    elif path == "/append":
        session.setdefault("items", [])
        session["items"].append(query["value"])
    elif path == "/clear":
        session.clear()
    elif path == "/read":
        dict(session)


def describe(session: Session, rejected: Any) -> bytes:
    return json.dumps(
        {"user": session.user_id, "rejected": rejected, "data": session.data}
    ).encode()


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        message = await receive()
        scope.setdefault("state", {})["lifespan_seen"] = message["type"]
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
    session = get_session(scope)
    path = scope["path"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            session["late"] = True
            body = b"mutated"
        except RuntimeError as error:
            body = str(error).encode()
        await send({"type": "http.response.body", "body": body})
        return
    if path not in ("/untouched", "/handle"):
        act(session, path, query)
    if path == "/untouched":
        body = b"{}"
    elif path == "/handle":
        body = json.dumps({"handle": session.handle}).encode()
    else:
        body = describe(session, scope.get("session_rejected"))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    session = get_session(environ)
    path = environ["PATH_INFO"]
    if path != "/untouched":
        act(session, path, query)
    body = describe(session, environ.get("session_middleware.rejected"))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
