"""sessions() / SessionConfig: one configured session layer, and the decorator that wraps an
app with it (the settings themselves are in _configuration.py)."""

from __future__ import annotations

import inspect
from typing import Any

from ._configuration import DEFAULT_REDIS_URL, Configuration
from ._redis.clients import is_async_client
from .epochs.base import Interface


class SessionConfig(Configuration):
    __doc__ = Configuration.__doc__

    def __call__(self, app: Any) -> Any:
        """Wrap an ASGI 3 or WSGI app (detected; `interface=` overrides)."""
        interface = self.interface or detect_interface(app)
        self.check_interface(interface)
        # Imported here, one way: an ASGI app never loads the WSGI driver, and the drivers
        # depend on _configuration alone.
        if interface == "asgi":
            from .asgi import SessionMiddleware

            return SessionMiddleware(app, config=self)
        from .wsgi import WSGISessionMiddleware

        return WSGISessionMiddleware(app, config=self)


sessions = SessionConfig
"""`sessions(...)` builds a SessionConfig: the one decorator."""


def detect_interface(app: Any) -> Interface:
    """'asgi' when calling the app gives a coroutine, else 'wsgi'."""
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else type(app).__call__
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app):
        return "asgi"
    return "wsgi"


__all__ = ["DEFAULT_REDIS_URL", "SessionConfig", "detect_interface", "is_async_client", "sessions"]
