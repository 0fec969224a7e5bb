"""The examples' HTML pages: plain HTML with one inline style sheet, every value escaped.

`form_extra` is inserted into every form (Django passes its CSRF field there).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from .accounts import DEMO_HINT

STYLE = (Path(__file__).with_name("style.css")).read_text()
REJECTED_NOTICE = (
    "You were signed out: your password was changed, or you signed out your other devices."
)
ENDED_NOTICE = "Your session has ended: it was signed out from another device, or it expired."
OTHERS_SIGNED_OUT = "Your other devices have been signed out."


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


def devices_table(devices: Sequence[Any], this_handle: str | None, form_extra: str) -> str:
    """The user's sessions, this one marked, a button to end each other one."""
    rows = []
    for info in devices:
        if info.handle == this_handle:
            action = '<span class="badge">this device</span>'
        else:
            action = f"""<form method="post" action="/sessions/revoke">{form_extra}
<input type="hidden" name="handle" value="{escape(info.handle)}">
<button class="danger small">Sign out</button></form>"""
        agent = escape(info.user_agent or "")
        rows.append(
            f'<tr><td title="{agent}">{escape(info.device)}</td>'
            f'<td class="hide-narrow">{escape(info.ip or "")}</td>'
            f"<td>{info.created_at:%Y-%m-%d %H:%M}</td>"
            f'<td class="hide-narrow">{info.last_seen:%Y-%m-%d %H:%M}</td><td>{action}</td></tr>'
        )
    return f"""<div class="table"><table>
<tr><th>Device</th><th class="hide-narrow">IP</th><th>Signed in (UTC)</th>
<th class="hide-narrow">Last seen (UTC)</th><th></th></tr>
{"".join(rows)}
</table></div>"""


def profile_page(
    session: Any,
    devices: Sequence[Any],
    *,
    notice: str | None = None,
    form_extra: str = "",
) -> str:
    """The signed-in page of `session` (the package's Session), with the user's `devices`."""
    user_id, this_handle = str(session.user_id), session.handle
    rows = "".join(
        f"<tr><th>{escape(key)}</th><td><code>{escape(json.dumps(value))}</code></td></tr>"
        for key, value in sorted(session.items())
    )
    kind = "ok" if notice == OTHERS_SIGNED_OUT else "notice"
    return layout(
        f"Signed in as {user_id}",
        f"""<section class="card">
<h1>Signed in as {escape(user_id)}</h1>
{message(notice, kind)}<p>Open this page in a second browser and sign in as {escape(user_id)}
there too: both devices appear below. Then end the other one from here.</p>
</section>
<section class="card">
<h2>Where you're signed in</h2>
{devices_table(devices, this_handle, form_extra)}
</section>
<section class="card">
<h2>Sign out my other devices</h2>
<p class="muted">Every other session of {escape(user_id)} ends at its next request, on every
server, in one Redis write. This one stays signed in.</p>
<form method="post" action="/logout-others">{form_extra}
<button class="danger">Sign out my other devices</button>
</form>
</section>
<section class="card">
<h2>This session</h2>
<p class="muted">What the server keeps for this browser. The cookie holds only a signed,
random id.</p>
<div class="table"><table>{rows}</table></div>
</section>""",
        user_id=user_id,
        form_extra=form_extra,
    )


def sessions_page(listed: list[Any], this_handle: str | None, *, form_extra: str = "") -> str:
    """ "Where you're signed in" on a page of its own."""
    return layout(
        "Where you're signed in",
        f"""<section class="card">
<h1>Where you're signed in</h1>
{devices_table(listed, this_handle, form_extra)}
<form method="post" action="/logout-others" style="margin-top: 1rem">{form_extra}
<button class="danger">Sign out all other devices</button>
</form>
<p><a href="/">Back</a></p>
</section>""",
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
