"""The devices endpoints for Starlette and FastAPI, mounted in one line:

    from starlette.routing import Mount
    from session_middleware.devices.starlette import devices_router

    app.mount("/account/sessions", devices_router(config))      # FastAPI or Starlette
    # or: routes=[..., Mount("/account/sessions", devices_router(config))]

``config`` is the SessionConfig whose middleware wraps the app. Starlette has no CSRF
protection of its own, so a POST must pass the same-origin check (``Sec-Fetch-Site`` or
``Origin``; see session_middleware.devices.same_origin); `trusted_origins` names other
origins allowed to post (e.g. a front end on another host).
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from .. import devices as shared
from .._fail_closed import FAILURES
from .._request_session import get_session
from ..config import SessionConfig
from ..session import Session


def devices_router(config: SessionConfig, *, trusted_origins: Collection[str] = ()) -> Router:
    """A Router with the devices endpoints: ``GET /``, ``POST /{handle}/revoke`` and
    ``POST /others/revoke``."""

    async def list_devices(request: Request) -> Response:
        session = get_session(request)
        if session.user_id is None:
            return _refused(shared.ANONYMOUS)
        try:
            infos = await config.alist_sessions(session.user_id)
        except FAILURES as error:
            return _refused(shared.unavailable(config, error))
        return JSONResponse(shared.listing(infos, session.handle), headers=shared.NO_STORE)

    async def revoke(request: Request) -> Response:
        session, refusal = _may_change(request, trusted_origins)
        if refusal is not None:
            return _refused(refusal)
        assert session.user_id is not None
        handle = request.path_params["handle"]
        try:
            ended = shared.end_if_current(session, handle) or await config.arevoke_session(
                session.user_id, handle
            )
        except FAILURES as error:
            return _refused(shared.unavailable(config, error))
        if not ended:
            return _refused(shared.NOT_YOURS)
        return JSONResponse({"revoked": handle})

    async def revoke_others(request: Request) -> Response:
        session, refusal = _may_change(request, trusted_origins)
        if refusal is not None:
            return _refused(refusal)
        session.logout_others()
        return JSONResponse({"revoked": "others"})

    return Router(
        routes=[
            Route("/", list_devices, methods=["GET"]),
            Route("/others/revoke", revoke_others, methods=["POST"]),
            Route("/{handle}/revoke", revoke, methods=["POST"]),
        ]
    )


def _may_change(
    request: Request, trusted_origins: Collection[str]
) -> tuple[Session, shared.Refusal | None]:
    session = get_session(request)
    if session.user_id is None:
        return session, shared.ANONYMOUS
    own_origin = f"{request.url.scheme}://{request.url.netloc}"
    headers = request.headers
    if not shared.same_origin(
        fetch_site=headers.get("sec-fetch-site"),
        origin=headers.get("origin"),
        own_origin=own_origin,
        trusted_origins=trusted_origins,
    ):
        return session, shared.CROSS_SITE
    return session, None


def _refused(refusal: shared.Refusal) -> Response:
    return JSONResponse(refusal.body(), status_code=refusal.status, headers=refusal.headers)
