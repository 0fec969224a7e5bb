"""Flask (WSGI) example: sign in, see your devices and sign them out, reset a password.

Run it (with a Redis found or started for you):  python examples/run.py --app flask
With your own Redis:  REDIS_URL=redis://... flask --app examples/flask_app.py run
"""

from __future__ import annotations

import time
from urllib.parse import quote

from demo import pages
from demo.accounts import Accounts
from demo.environment import SESSION_COOKIE, session_settings
from flask import Flask, redirect, request
from werkzeug.wrappers import Response

from session_middleware import SessionConfig, get_session, sessions
from session_middleware.devices.flask import devices_blueprint
from session_middleware.flask import init_app

REJECTED = "session_middleware.rejected"  # the WSGI environ key telling why a session ended
DEVICES_PREFIX = "/account/sessions"
DEVICES = pages.DevicesEndpoints.under(DEVICES_PREFIX)


def see_home() -> Response:
    return redirect("/", code=303)


def create_app(config: SessionConfig, accounts: Accounts) -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def home() -> str:
        session = get_session(request)
        if session.user_id is None:
            notice = pages.signed_out_notice(
                request.environ.get(REJECTED), SESSION_COOKIE in request.cookies
            )
            return pages.login_page(notice=notice)
        session["views"] = session.get("views", 0) + 1
        return pages.profile_page(session, DEVICES)

    @app.post("/login")
    def login() -> Response | tuple[str, int]:
        user_id = accounts.authenticate(
            request.form.get("username", ""), request.form.get("password", "")
        )
        if user_id is None:
            return pages.login_page(error="Wrong user name or password."), 401
        session = get_session(request)
        session.login(user_id)
        session["signed_in_at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        return see_home()

    @app.post("/logout")
    def logout() -> Response:
        get_session(request).logout()
        return see_home()

    @app.get("/forgot")
    def forgot_form() -> str:
        return pages.forgot_page()

    @app.post("/forgot")
    def forgot() -> str:
        token = accounts.issue_reset_token(request.form.get("username", ""))
        if token is not None:
            pages.print_reset_link(f"{request.host_url}reset?token={quote(token)}")
        return pages.forgot_sent_page()

    @app.get("/reset")
    def reset_form() -> str | tuple[str, int]:
        token = request.args.get("token", "")
        if accounts.peek_reset_token(token) is None:
            return pages.invalid_link_page(), 400
        return pages.reset_page(token)

    @app.post("/reset")
    def reset() -> str | tuple[str, int]:
        token = request.form.get("token", "")
        if accounts.peek_reset_token(token) is None:
            return pages.invalid_link_page(), 400
        try:
            user_id = accounts.reset_password(token, request.form.get("password", ""))
        except ValueError as error:
            return pages.reset_page(token, error=str(error)), 400
        # Nobody is signed in here: every session of the user, on every device, ends now.
        config.invalidate_user(user_id)
        return pages.reset_done_page(user_id)

    init_app(app, config)
    # The package's devices endpoints: list the user's sessions, revoke one, the others.
    app.register_blueprint(devices_blueprint(), url_prefix=DEVICES_PREFIX)
    return app


config = sessions(**session_settings())
app = create_app(config, Accounts.with_demo_users())
