"""Shared by the compat plugins: every configuration built in a compat run (a SessionConfig
from `sessions(...)`, or the one a drop-in SessionMiddleware builds from its keywords)
stores its keys under the run's own prefix (SM_COMPAT_PREFIX), so the harness can delete
exactly those keys afterwards. Nothing else about the configuration is changed."""

from __future__ import annotations

import functools
import os

REDIS_URL = os.environ.get("SM_COMPAT_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("SM_COMPAT_PREFIX", "smcompat:adhoc:")
SECRET = "compat-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"


def isolate_key_prefix() -> None:
    # The base of SessionConfig, which the drop-in middleware builds directly.
    from session_middleware._configuration import Configuration

    original = Configuration.__init__
    if getattr(original, "_sm_compat", False):
        return

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("key_prefix", "sm:") == "sm:":
            kwargs["key_prefix"] = PREFIX
        original(self, *args, **kwargs)

    __init__._sm_compat = True  # type: ignore[attr-defined]
    Configuration.__init__ = __init__  # type: ignore[method-assign]
