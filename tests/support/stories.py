"""Browsers for the apps of tests/load_app.py, and the login / list / revoke / logout_others
/ invalidate story every topology must pass, through the ASGI or the WSGI face."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx

from session_middleware import SessionConfig

from .load_app import starlette_app, wsgi_app

JSON = dict[str, Any]
BASE = "http://sessions.test"


class Browser:
    """One cookie jar, talking to one app through httpx, sync or async."""

    def __init__(self, client: httpx.Client | httpx.AsyncClient) -> None:
        self.client = client

    async def call(self, method: str, path: str) -> tuple[int, JSON | None]:
        if isinstance(self.client, httpx.AsyncClient):
            response = await self.client.request(method, path)
        else:
            response = self.client.request(method, path)
        is_json = response.headers.get("content-type", "").startswith("application/json")
        return response.status_code, response.json() if is_json else None

    async def ok(self, method: str, path: str) -> JSON:
        status, body = await self.call(method, path)
        assert status == 200, (method, path, status, body)
        assert body is not None
        return body

    async def close(self) -> None:
        if isinstance(self.client, httpx.AsyncClient):
            await self.client.aclose()
        else:
            self.client.close()


def browsers_for(config: SessionConfig, face: str) -> Callable[[], Browser]:
    """A factory of browsers on the Starlette app ('asgi') or the WSGI app ('wsgi')."""
    if face == "asgi":
        app = starlette_app(config)
        return lambda: Browser(httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE))
    wsgi = wsgi_app(config)
    return lambda: Browser(httpx.Client(transport=httpx.WSGITransport(wsgi), base_url=BASE))


async def full_story(new_browser: Callable[[], Browser], user: str | None = None) -> str:
    """Two devices of one user: login, a write, list, revoke, logout_others, invalidate,
    logout. Returns the user id it used."""
    user = user or f"user-{uuid.uuid4().hex[:8]}"
    phone, laptop = new_browser(), new_browser()
    try:
        assert (await phone.ok("POST", f"/login?user={user}"))["user"] == user
        assert (await laptop.ok("POST", f"/login?user={user}"))["user"] == user
        assert (await phone.ok("POST", "/hit"))["count"] == 1
        assert _seen(await phone.ok("GET", "/me")) == (user, 1, None)

        laptop_handle = (await laptop.ok("GET", "/me"))["handle"]
        listed = (await phone.ok("GET", "/sessions"))["handles"]
        assert len(listed) == 2 and laptop_handle in listed
        assert (await phone.ok("POST", f"/revoke?handle={laptop_handle}"))["revoked"] is True
        assert (await laptop.ok("GET", "/me"))["user"] is None
        assert (await phone.ok("GET", "/me"))["user"] == user
        assert len((await phone.ok("GET", "/sessions"))["handles"]) == 1

        await laptop.ok("POST", f"/login?user={user}")
        await phone.ok("POST", "/logout_others")
        assert _seen(await laptop.ok("GET", "/me")) == (None, None, "epoch")
        assert (await phone.ok("GET", "/me"))["user"] == user

        await laptop.ok("POST", f"/invalidate?user={user}")
        assert _seen(await phone.ok("GET", "/me")) == (None, None, "epoch")

        await laptop.ok("POST", f"/login?user={user}")
        assert (await laptop.ok("GET", "/me"))["user"] == user
        await laptop.ok("POST", "/logout")
        assert (await laptop.ok("GET", "/me"))["user"] is None
        assert (await laptop.ok("GET", "/sessions"))["handles"] == []
    finally:
        await phone.close()
        await laptop.close()
    return user


def _seen(body: JSON) -> tuple[Any, Any, Any]:
    return body["user"], body["count"], body["rejected"]
