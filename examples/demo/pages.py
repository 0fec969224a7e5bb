"""The examples' HTML pages: plain HTML, every value escaped.

`form_extra` is inserted into every form (Django passes its CSRF field there).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any

from .accounts import DEMO_HINT

REJECTED_NOTICE = (
    "You were signed out: your password was changed, or you signed out your other devices."
)


def layout(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; }}
.notice {{ background: #fff3cd; padding: .6rem 1rem; border-radius: .3rem; }}
.error {{ background: #f8d7da; padding: .6rem 1rem; border-radius: .3rem; }}
form {{ margin: 1rem 0; }}
input {{ display: block; margin: .3rem 0 .8rem; }}
td, th {{ padding: .2rem .8rem; text-align: left; }}
</style>
</head>
<body>
<h1>{escape(title)}</h1>
{body}
</body>
</html>
"""


def _message(text: str | None, kind: str) -> str:
    return f'<p class="{kind}">{escape(text)}</p>' if text else ""


def login_page(*, notice: str | None = None, error: str | None = None, form_extra: str = "") -> str:
    return layout(
        "Sign in",
        f"""{_message(notice, "notice")}{_message(error, "error")}
<form method="post" action="/login">{form_extra}
<label>User name <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required>
</label>
<button>Sign in</button>
</form>
<p>Demo accounts: {escape(DEMO_HINT)}.</p>
<p><a href="/forgot">Forgot your password?</a></p>""",
    )


def profile_page(
    user_id: str,
    session: Mapping[str, Any],
    *,
    notice: str | None = None,
    form_extra: str = "",
    sessions_link: str = "",
) -> str:
    rows = "".join(
        f"<tr><th>{escape(key)}</th><td><code>{escape(json.dumps(value))}</code></td></tr>"
        for key, value in sorted(session.items())
    )
    return layout(
        f"Signed in as {user_id}",
        f"""{_message(notice, "notice")}
<h2>This session</h2>
<table>{rows}</table>
{sessions_link}
<form method="post" action="/logout-others">{form_extra}
<button>Sign out my other devices</button>
</form>
<form method="post" action="/logout">{form_extra}
<button>Sign out</button>
</form>""",
    )


def sessions_page(listed: list[Any], this_handle: str | None, *, form_extra: str = "") -> str:
    """ "Where you're signed in": one row a session, a button to end each other one."""
    rows = []
    for info in listed:
        here = info.handle == this_handle
        action = (
            "<strong>this device</strong>"
            if here
            else f"""<form method="post" action="/sessions/revoke">{form_extra}
<input type="hidden" name="handle" value="{escape(info.handle)}">
<button>Sign out</button></form>"""
        )
        rows.append(
            f"<tr><td>{escape(info.user_agent or 'unknown device')}</td>"
            f"<td>{escape(info.ip or '')}</td>"
            f"<td>{info.created_at:%Y-%m-%d %H:%M}</td>"
            f"<td>{info.last_seen:%Y-%m-%d %H:%M}</td><td>{action}</td></tr>"
        )
    return layout(
        "Where you're signed in",
        f"""<table>
<tr><th>Device</th><th>IP</th><th>Signed in (UTC)</th><th>Last seen (UTC)</th><th></th></tr>
{"".join(rows)}
</table>
<form method="post" action="/logout-others">{form_extra}
<button>Sign out all other devices</button>
</form>
<p><a href="/">Back</a></p>""",
    )


def forgot_page(*, form_extra: str = "") -> str:
    return layout(
        "Reset your password",
        f"""<form method="post" action="/forgot">{form_extra}
<label>User name <input name="username" required></label>
<button>Send me a reset link</button>
</form>""",
    )


def forgot_sent_page() -> str:
    return layout(
        "Check your inbox",
        """<p>If that account exists, its reset link has been printed in the terminal running
this example (a real application would email it).</p>""",
    )


def reset_page(token: str, *, error: str | None = None, form_extra: str = "") -> str:
    return layout(
        "Choose a new password",
        f"""{_message(error, "error")}
<form method="post" action="/reset">{form_extra}
<input type="hidden" name="token" value="{escape(token)}">
<label>New password <input name="password" type="password" autocomplete="new-password"
 minlength="8" required></label>
<button>Set the password</button>
</form>""",
    )


def reset_done_page(user_id: str) -> str:
    return layout(
        "Password changed",
        f"""<p>The password of {escape(user_id)} has been changed and every session of
{escape(user_id)}, on every device, has been signed out.</p>
<p><a href="/">Sign in</a></p>""",
    )


def invalid_link_page() -> str:
    return layout(
        "This link cannot be used",
        "<p>This reset link is unknown, used or expired.</p>\n"
        '<p><a href="/forgot">Ask for a new one</a></p>',
    )


def print_reset_link(link: str) -> None:
    """Stands in for the email a real application would send."""
    print(f"password reset link (a real application would email it): {link}", flush=True)
