"""Flask-Session's `Session(app)`, swapped for this package's documented wiring: the
harness replaces Flask-Session's import in its test module with this one. Only its Redis
tests run (SESSION_TYPE = "redis"); the app's other settings are upstream's."""

from __future__ import annotations

from typing import Any

from sm_compat_common import PREFIX, REDIS_URL


def Session(app: Any) -> None:  # Flask-Session's name
    from session_middleware import sessions
    from session_middleware.flask import init_app

    if app.config.get("SESSION_TYPE") != "redis":
        raise RuntimeError("the compat run swaps Flask-Session's Redis interface only")
    init_app(app, sessions(redis_url=REDIS_URL, key_prefix=PREFIX))
