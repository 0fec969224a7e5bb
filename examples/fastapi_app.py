"""FastAPI example: sign in, see the session, sign out your other devices, reset a password.

Run it (with a Redis found or started for you):  python examples/run.py
With your own Redis:  REDIS_URL=redis://... uvicorn --app-dir examples fastapi_app:app
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl, quote

from demo import pages
from demo.accounts import Accounts
from demo.environment import session_settings
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from session_middleware import SessionConfig, get_session, sessions


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of a urlencoded form (FastAPI's Form() would need python-multipart)."""
    return dict(parse_qsl((await request.body()).decode()))


def see_home() -> Response:
    return RedirectResponse("/", status_code=303)


def create_app(config: SessionConfig, accounts: Accounts) -> Any:
    api = FastAPI(title="session_middleware example")

    @api.get("/")
    async def home(request: Request) -> Response:
        session = get_session(request)  # the same object as request.session
        if session.user_id is None:
            rejected = request.scope.get("session_rejected") == "epoch"
            return HTMLResponse(
                pages.login_page(notice=pages.REJECTED_NOTICE if rejected else None)
            )
        session["views"] = session.get("views", 0) + 1
        notice = session.pop("flash", None)
        return HTMLResponse(pages.profile_page(str(session.user_id), session, notice=notice))

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

    @api.post("/logout-others")
    async def logout_others(request: Request) -> Response:
        session = get_session(request)
        if session.user_id is not None:
            session.logout_others()
            session["flash"] = "Your other devices have been signed out."
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
