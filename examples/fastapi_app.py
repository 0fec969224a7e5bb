"""FastAPI example: sign in, see your devices and sign them out, reset a password.

Run it (with a Redis found or started for you):  python examples/run.py
With your own Redis:  REDIS_URL=redis://... uvicorn --app-dir examples fastapi_app:app
With epochs in SQL:   EPOCHS_URL=sqlite+aiosqlite:///epochs.db python examples/run.py
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, quote

from demo import pages
from demo.accounts import Accounts
from demo.environment import SESSION_COOKIE, session_settings
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from session_middleware import SessionConfig, get_session, sessions
from session_middleware.devices.fastapi import devices_api_router
from session_middleware.fastapi import CurrentSession, CurrentUserId

DEVICES_PREFIX = "/account/sessions"
DEVICES = pages.DevicesEndpoints.under(DEVICES_PREFIX)


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of a urlencoded form (FastAPI's Form() would need python-multipart)."""
    return dict(parse_qsl((await request.body()).decode()))


def see_home() -> Response:
    return RedirectResponse("/", status_code=303)


def create_app(config: SessionConfig, accounts: Accounts) -> Any:
    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        # With EPOCHS_URL set, the epochs live in SQL: create their table, if missing.
        create_table = getattr(config.epochs, "acreate_table", None)
        if create_table is not None:
            await create_table()
        yield
        if create_table is not None:
            await config.epochs.adispose()  # type: ignore[attr-defined]
        await config.aclose()

    api = FastAPI(title="session_middleware example", lifespan=lifespan)
    # The package's devices endpoints: list the user's sessions, revoke one, the others.
    api.include_router(devices_api_router(config), prefix=DEVICES_PREFIX)

    @api.get("/")
    async def home(request: Request) -> Response:
        session = get_session(request)  # the same object as request.session
        if session.user_id is None:
            notice = pages.signed_out_notice(
                request.scope.get("session_rejected"), SESSION_COOKIE in request.cookies
            )
            return HTMLResponse(pages.login_page(notice=notice))
        session["views"] = session.get("views", 0) + 1
        return HTMLResponse(pages.profile_page(session, DEVICES))

    @api.get("/api/me")
    async def me(session: CurrentSession, user_id: CurrentUserId) -> dict[str, Any]:
        return {"user": user_id, "signed_in_at": session.get("signed_in_at")}

    @api.post("/login")
    async def login(request: Request) -> Response:
        fields = await form_fields(request)
        user_id = await run_in_threadpool(
            accounts.authenticate, fields.get("username", ""), fields.get("password", "")
        )
        if user_id is None:
            page = pages.login_page(error="Wrong user name or password.")
            return HTMLResponse(page, status_code=401)
        session = get_session(request)
        session.login(user_id)
        session["signed_in_at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        return see_home()

    @api.post("/logout")
    async def logout(request: Request) -> Response:
        get_session(request).logout()
        return see_home()

    @api.get("/forgot")
    async def forgot_form() -> Response:
        return HTMLResponse(pages.forgot_page())

    @api.post("/forgot")
    async def forgot(request: Request) -> Response:
        fields = await form_fields(request)
        token = accounts.issue_reset_token(fields.get("username", ""))
        if token is not None:
            pages.print_reset_link(f"{request.base_url}reset?token={quote(token)}")
        return HTMLResponse(pages.forgot_sent_page())

    @api.get("/reset")
    async def reset_form(token: str = "") -> Response:
        if accounts.peek_reset_token(token) is None:
            return HTMLResponse(pages.invalid_link_page(), status_code=400)
        return HTMLResponse(pages.reset_page(token))

    @api.post("/reset")
    async def reset(request: Request) -> Response:
        fields = await form_fields(request)
        token = fields.get("token", "")
        if accounts.peek_reset_token(token) is None:
            return HTMLResponse(pages.invalid_link_page(), status_code=400)
        try:
            user_id = await run_in_threadpool(
                accounts.reset_password, token, fields.get("password", "")
            )
        except ValueError as error:
            return HTMLResponse(pages.reset_page(token, error=str(error)), status_code=400)
        # Nobody is signed in here: every session of the user, on every device, ends now.
        await config.ainvalidate_user(user_id)
        return HTMLResponse(pages.reset_done_page(user_id))

    return config(api)


config = sessions(**session_settings())
app = create_app(config, Accounts.with_demo_users())
