"""The examples' settings, read from the environment."""

from __future__ import annotations

import functools
import os
import secrets
import sys
from typing import Any

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
SESSION_COOKIE = "session"  # the pages tell a session that ended from none by this cookie


@functools.cache
def secret_key() -> str:
    """SECRET_KEY from the environment, or a random key for this process (with a warning)."""
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    print(
        "warning: SECRET_KEY is not set, so this process uses a random key: every session "
        "ends when it stops. Set one with\n"
        "  export SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')",
        file=sys.stderr,
    )
    return secrets.token_urlsafe(32)


def session_settings() -> dict[str, Any]:
    """Keyword arguments for session_middleware.sessions(...).

    EPOCHS_URL (e.g. sqlite+aiosqlite:///epochs.db or postgresql+asyncpg://...) keeps the
    users' epochs in that database instead of Redis: see docs/sql-epochs.md.
    """
    settings: dict[str, Any] = {
        "secret_key": secret_key(),
        "redis_url": os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
        "key_prefix": os.environ.get("SESSION_KEY_PREFIX", "example:"),
        "session_cookie": SESSION_COOKIE,
    }
    epochs_url = os.environ.get("EPOCHS_URL")
    if epochs_url:
        from session_middleware import SQLEpochs

        # The demo's users live in memory, so their epochs get a table of their own.
        settings["epochs"] = SQLEpochs.managed(epochs_url)
    return settings
