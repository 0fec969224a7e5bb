"""The devices endpoints as a FastAPI APIRouter, for ``include_router`` (they then appear
in the app's OpenAPI schema):

    from session_middleware.devices.fastapi import devices_api_router

    app.include_router(devices_api_router(config), prefix="/account/sessions")

The endpoints are those of session_middleware.devices.starlette (which ``app.mount`` takes
as they are), with the same same-origin check on the POSTs.
"""

from __future__ import annotations

from collections.abc import Collection

from fastapi import APIRouter
from starlette.routing import Route

from ..config import SessionConfig
from .starlette import devices_router


def devices_api_router(
    config: SessionConfig, *, trusted_origins: Collection[str] = (), tags: list[str] | None = None
) -> APIRouter:
    """An APIRouter with ``GET /``, ``POST /{handle}/revoke`` and ``POST /others/revoke``."""
    router = APIRouter(tags=list(tags or ["devices"]))
    for route in devices_router(config, trusted_origins=trusted_origins).routes:
        assert isinstance(route, Route)
        methods = sorted(set(route.methods or ()) - {"HEAD"})  # Starlette adds HEAD to GET
        router.add_api_route(route.path, route.endpoint, methods=methods, name=route.name)
    return router
