"""A small example-like app with sessions, as a Starlette (ASGI) app and a plain WSGI app
with the same routes. Under a real server, `create_app` builds it from the environment:

    SM_REDIS_URL       the session store (any URL sessions() accepts)
    SM_KEY_PREFIX      the Redis key prefix
    SM_SECRET          the secret key
    SM_REDIS_TIMEOUT   redis_timeout in seconds

Routes (every answer is JSON; ``user`` is the session's user, or null):
    GET  /me                     the session as the request saw it, its handle, the worker
    POST /login?user=U           log in as U, with a counter at 0
    POST /hit                    add one to the counter (a write-back)
    POST /logout                 end this session
    POST /logout_others          end every other session of this user
    GET  /sessions               handles of this user's sessions
    POST /revoke?handle=H        revoke one of this user's sessions
    POST /invalidate?user=U      invalidate every session of U
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from session_middleware import Session, SessionConfig, get_session, sessions

JSON = dict[str, Any]


def _seen(session: Session, rejected: Any) -> JSON:
    return {
        "user": session.user_id,
        "count": session.get("count"),
        "rejected": rejected,
        "handle": session.handle,
        "worker": os.getpid(),
    }


def _change(session: Session, path: str, query: dict[str, str]) -> JSON | None:
    """The part both faces share: what a route does to the session."""
    if path == "/login":
        session.login(query["user"])
        session["count"] = 0
    elif path == "/hit":
        session["count"] = int(session.get("count") or 0) + 1
    elif path == "/logout":
        session.logout()
    elif path == "/logout_others":
        session.logout_others()
    else:
        return None
    return {"user": session.user_id, "count": session.get("count")}


def starlette_app(config: SessionConfig) -> Any:
    async def handle(request: Request) -> JSONResponse:
        session = get_session(request)
        path = request.url.path
        query = dict(request.query_params)
        changed = _change(session, path, query)
        if changed is not None:
            return JSONResponse(changed)
        if path == "/sessions":
            found = await config.alist_sessions(session.user_id) if session.user_id else []
            return JSONResponse({"handles": [info.handle for info in found]})
        if path == "/revoke":
            user = session.user_id
            revoked = user is not None and await config.arevoke_session(user, query["handle"])
            return JSONResponse({"revoked": revoked})
        if path == "/invalidate":
            await config.ainvalidate_user(query["user"])
            return JSONResponse({"invalidated": query["user"]})
        return JSONResponse(_seen(session, request.scope.get("session_rejected")))

    paths = ["/me", "/sessions"]
    changes = ["/login", "/hit", "/logout", "/logout_others", "/revoke", "/invalidate"]
    routes = [Route(p, handle, methods=["GET"]) for p in paths]
    routes += [Route(p, handle, methods=["POST"]) for p in changes]
    return config(Starlette(routes=routes))


def wsgi_app(config: SessionConfig) -> Any:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        session = get_session(environ)
        path = environ["PATH_INFO"]
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        body = _change(session, path, query)
        if body is None and path == "/sessions":
            found = config.list_sessions(session.user_id) if session.user_id else []
            body = {"handles": [info.handle for info in found]}
        elif body is None and path == "/revoke":
            user = session.user_id
            body = {"revoked": user is not None and config.revoke_session(user, query["handle"])}
        elif body is None and path == "/invalidate":
            config.invalidate_user(query["user"])
            body = {"invalidated": query["user"]}
        elif body is None:
            body = _seen(session, environ.get("session_middleware.rejected"))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    return config(app)


def create_app() -> Any:
    """The Starlette app, configured from the environment (for `uvicorn --factory`)."""
    config = sessions(
        secret_key=os.environ["SM_SECRET"],
        redis_url=os.environ["SM_REDIS_URL"],
        key_prefix=os.environ["SM_KEY_PREFIX"],
        redis_timeout=float(os.environ.get("SM_REDIS_TIMEOUT", "0.5")),
    )
    return starlette_app(config)
