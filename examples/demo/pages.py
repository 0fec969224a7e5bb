"""The examples' HTML pages: plain HTML with one inline style sheet, every value escaped.

The signed-in page lists the user's devices with a small script (devices.js) over the
package's ready-made devices endpoints, which each example mounts.

`form_extra` is inserted into every form (Django passes its CSRF field there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from .accounts import DEMO_HINT

STYLE = (Path(__file__).with_name("style.css")).read_text()
REJECTED_NOTICE = (
    "You were signed out: your password was changed, or you signed out your other devices."
)
ENDED_NOTICE = "Your session has ended: it was signed out from another device, or it expired."


def layout(title: str, body: str, *, user_id: str | None = None, form_extra: str = "") -> str:
    who = ""
    if user_id is not None:
        who = f"""<div class="who"><span>{escape(user_id)}</span>
<form method="post" action="/logout">{form_extra}<button class="quiet small">Sign out</button>
</form></div>"""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · session_middleware demo</title>
<style>
{STYLE}</style>
</head>
<body>
<header><a class="brand" href="/" style="color: inherit; text-decoration: none">session_middleware
<small>demo</small></a>{who}</header>
<main>
{body}
</main>
<footer>Sessions live in Redis; one write signs a user out everywhere.</footer>
</body>
</html>
"""


def message(text: str | None, kind: str) -> str:
    return f'<p class="message {kind}" role="status">{escape(text)}</p>\n' if text else ""


def login_page(*, notice: str | None = None, error: str | None = None, form_extra: str = "") -> str:
    return layout(
        "Sign in",
        f"""<section class="card">
<h1>Sign in</h1>
{message(notice, "notice")}{message(error, "error")}<form method="post" action="/login">{form_extra}
<label>User name <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required>
</label>
<div class="row"><button>Sign in</button>
<a href="/forgot">Forgot your password?</a></div>
</form>
<p class="muted">Demo accounts: {escape(DEMO_HINT)}.</p>
</section>
<section class="card">
<h2>What to try</h2>
<ol class="steps">
<li>Sign in here, then sign in as the same user in a second browser (or a private window).</li>
<li>In one of them press <strong>Sign out my other devices</strong>: the other one is signed
out at its next click, and told why.</li>
<li>Signed out, use <strong>Forgot your password?</strong>: setting a new password signs the
user out on every device at once.</li>
</ol>
</section>""",
    )


@dataclass(frozen=True)
class DevicesEndpoints:
    """Where the app mounted the package's devices endpoints (session_middleware.devices).

    `revoke_url` has HANDLE where a session's handle goes; `csrf_token` is sent in the
    X-CSRFToken header (Django); without one, the browser's Sec-Fetch-Site header is the
    same-origin proof the Starlette router and the Flask blueprint ask for.
    """

    list_url: str
    revoke_url: str
    others_url: str
    csrf_token: str | None = None
    page_url: str | None = None  # the same list as an HTML page (Django's template)

    @classmethod
    def under(cls, prefix: str) -> DevicesEndpoints:
        """The Starlette router's and the Flask blueprint's paths, mounted at `prefix`."""
        return cls(f"{prefix}/", f"{prefix}/HANDLE/revoke", f"{prefix}/others/revoke")

    def attributes(self) -> str:
        fields = {
            "list": self.list_url,
            "revoke": self.revoke_url,
            "others": self.others_url,
            "csrf": self.csrf_token or "",
        }
        return " ".join(f'data-{name}="{escape(value)}"' for name, value in fields.items())


# Fills the device table from the list endpoint and wires the buttons to the revoke
# endpoints. Every value goes in through textContent, never as HTML.
DEVICES_SCRIPT = (Path(__file__).with_name("devices.js")).read_text()


def profile_page(session: Any, endpoints: DevicesEndpoints, *, form_extra: str = "") -> str:
    """The signed-in page of `session` (the package's Session); its device list comes from
    the devices `endpoints`."""
    user_id = str(session.user_id)
    rows = "".join(
        f"<tr><th>{escape(key)}</th><td><code>{escape(json.dumps(value))}</code></td></tr>"
        for key, value in sorted(session.items())
    )
    page_link = ""
    if endpoints.page_url is not None:
        href = escape(endpoints.page_url)
        page_link = f'<p><a href="{href}">The same list on a page of its own</a></p>\n'
    return layout(
        f"Signed in as {user_id}",
        f"""<section class="card">
<h1>Signed in as {escape(user_id)}</h1>
<div id="devices-status"></div><p>Open this page in a second browser and sign in as
{escape(user_id)} there too: both devices appear below. Then end the other one from here.</p>
</section>
<section class="card" id="devices" {endpoints.attributes()}>
<h2>Where you're signed in</h2>
<div class="table"><table>
<thead><tr><th>Device</th><th class="hide-narrow">IP</th><th>Signed in (UTC)</th>
<th class="hide-narrow">Last seen (UTC)</th><th></th></tr></thead>
<tbody></tbody>
</table></div>
{page_link}</section>
<section class="card">
<h2>Sign out my other devices</h2>
<p class="muted">Every other session of {escape(user_id)} ends at its next request, on every
server, in one Redis write. This one stays signed in.</p>
<button class="danger" id="sign-out-others">Sign out my other devices</button>
</section>
<section class="card">
<h2>This session</h2>
<p class="muted">What the server keeps for this browser. The cookie holds only a signed,
random id.</p>
<div class="table"><table>{rows}</table></div>
</section>
<script>
{DEVICES_SCRIPT}</script>""",
        user_id=user_id,
        form_extra=form_extra,
    )


def forgot_page(*, form_extra: str = "") -> str:
    return layout(
        "Reset your password",
        f"""<section class="card">
<h1>Reset your password</h1>
<p>A new password signs you out on every device where you are signed in.</p>
<form method="post" action="/forgot">{form_extra}
<label>User name <input name="username" autocomplete="username" required></label>
<button>Send me a reset link</button>
</form>
<p><a href="/">Back to sign in</a></p>
</section>""",
    )


def forgot_sent_page() -> str:
    return layout(
        "Check your inbox",
        """<section class="card">
<h1>Check your inbox</h1>
<p>If that account exists, its reset link has been printed in the terminal running this
example (a real application would email it).</p>
<p><a href="/">Back to sign in</a></p>
</section>""",
    )


def reset_page(token: str, *, error: str | None = None, form_extra: str = "") -> str:
    return layout(
        "Choose a new password",
        f"""<section class="card">
<h1>Choose a new password</h1>
{message(error, "error")}<form method="post" action="/reset">{form_extra}
<input type="hidden" name="token" value="{escape(token)}">
<label>New password <input name="password" type="password" autocomplete="new-password"
 minlength="8" required></label>
<button>Set the password</button>
</form>
<p><a href="/">Back to sign in</a></p>
</section>""",
    )


def reset_done_page(user_id: str) -> str:
    return layout(
        "Password changed",
        f"""<section class="card">
<h1>Password changed</h1>
<p class="message ok">The password of {escape(user_id)} has been changed and every session of
{escape(user_id)}, on every device, has been signed out.</p>
<p><a href="/">Sign in</a></p>
</section>""",
    )


def invalid_link_page() -> str:
    return layout(
        "This link cannot be used",
        """<section class="card">
<h1>This link cannot be used</h1>
<p>This reset link is unknown, used or expired.</p>
<p><a href="/forgot">Ask for a new one</a> or <a href="/">go back to sign in</a>.</p>
</section>""",
    )


def signed_out_notice(rejected: object, had_cookie: bool) -> str | None:
    """What to tell a browser that arrives signed out: why, if it was signed out by force.

    `rejected` is what the middleware put in scope["session_rejected"] (WSGI:
    environ["session_middleware.rejected"]); `had_cookie` whether the request carried a
    session cookie although no session was found (revoked from another device, or expired).
    """
    if rejected == "epoch":
        return REJECTED_NOTICE
    return ENDED_NOTICE if had_cookie else None


def print_reset_link(link: str) -> None:
    """Stands in for the email a real application would send."""
    print(f"password reset link (a real application would email it): {link}", flush=True)
