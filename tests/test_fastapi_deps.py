"""FastAPI dependencies: CurrentSession and CurrentUserId on a real app and the real Redis."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket

from session_middleware import Session, SessionConfig, SessionMiddleware
from session_middleware._protocol.key_layout import UserId
from session_middleware.fastapi import (
    NOT_LOGGED_IN,
    SESSION_ENDED,
    CurrentSession,
    CurrentUserId,
    current_session,
    current_user_id,
)

from .support.http import asgi_client_of, run_websocket


def make_app(config: SessionConfig) -> FastAPI:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, config=config)

    @app.post("/login/{name}")
    async def login(name: str, session: CurrentSession) -> dict[str, Any]:
        session.login(name)
        return {}

    @app.post("/cart/{item}")
    def add(item: str, session: CurrentSession) -> dict[str, Any]:  # a sync endpoint
        session["cart"] = [*session.get("cart", []), item]
        return {"cart": session["cart"]}

    @app.get("/me")
    async def me(user_id: CurrentUserId, session: CurrentSession) -> dict[str, Any]:
        return {"user": user_id, "cart": session.get("cart", [])}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, user_id: CurrentUserId) -> None:
        await websocket.accept()
        await websocket.send_json({"user": user_id})
        await websocket.close()

    return app


@pytest.mark.anyio
async def test_current_session_and_current_user_id(config: SessionConfig) -> None:
    async with asgi_client_of(make_app(config)) as client:
        refused = await client.get("/me")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Session"
        assert refused.json() == {"detail": NOT_LOGGED_IN}

        assert (await client.post("/cart/tea")).json() == {"cart": ["tea"]}
        await client.post("/login/ann")
        await client.post("/cart/milk")
        assert (await client.get("/me")).json() == {"user": "ann", "cart": ["tea", "milk"]}

        await config.ainvalidate_user("ann")
        ended = await client.get("/me")
        assert ended.status_code == 401 and ended.json() == {"detail": SESSION_ENDED}


@pytest.mark.anyio
async def test_the_dependencies_stay_out_of_the_openapi_parameters(config: SessionConfig) -> None:
    async with asgi_client_of(make_app(config)) as client:
        schema = (await client.get("/openapi.json")).json()
    assert "parameters" not in schema["paths"]["/me"]["get"]
    assert [p["name"] for p in schema["paths"]["/cart/{item}"]["post"]["parameters"]] == ["item"]


@pytest.mark.anyio
async def test_websocket_endpoints_get_the_user_too(config: SessionConfig) -> None:
    app = make_app(config)
    async with asgi_client_of(app) as client:
        await client.post("/login/ben")
        cookie = client.cookies["session"]
    sent = await run_websocket(app, cookie)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == '{"user":"ben"}'

    refused = await run_websocket(app, None)
    assert refused == [{"type": "websocket.close", "code": 1008, "reason": NOT_LOGGED_IN}]


def test_the_dependencies_are_typed() -> None:
    assert typing.get_args(CurrentSession)[0] is Session
    assert typing.get_args(CurrentUserId)[0] == UserId
    assert typing.get_type_hints(current_session)["return"] is Session
    assert typing.get_type_hints(current_user_id)["return"] == UserId
