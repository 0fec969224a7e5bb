"""sessions() / SessionConfig: one configured session layer, and the decorator that wraps an
app with it (the settings themselves are in _configuration.py)."""

from __future__ import annotations

import inspect
from typing import Any

from ._configuration import DEFAULT_REDIS_URL, Configuration
from ._core.epoch_provider import Interface
from ._transport.clients import is_async_client
from .errors import ConfigurationError


class SessionConfig(Configuration):
    __doc__ = Configuration.__doc__

    def __call__(self, app: Any) -> Any:
        """Wrap an ASGI 3 or WSGI app (detected; `interface=` overrides)."""
        if not callable(app):
            raise ConfigurationError(
                f"sessions(...) wraps an ASGI or WSGI app, and {type(app).__name__} is not callable"
            )
        if self.interface is not None:
            _check_fits(app, self.interface)
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


def _check_fits(app: Any, interface: Interface) -> None:
    """Refuse an app that cannot be what `interface` says: a coroutine function is no WSGI
    app; a WSGI app takes (environ, start_response), an ASGI app (scope, receive, send)."""
    arguments = 2 if interface == "wsgi" else 3
    if interface == "wsgi" and detect_interface(app) == "asgi":
        problem = "it is a coroutine function, so an ASGI app"
    elif not _takes(app, arguments):
        problem = f"it does not take {arguments} arguments"
    else:
        return
    raise ConfigurationError(
        f"interface={interface!r} does not fit the app: {problem}; leave interface out to detect it"
    )


def _takes(app: Any, arguments: int) -> bool:
    try:
        inspect.signature(app).bind(*([None] * arguments))
    except TypeError:
        return False
    except ValueError:  # no signature to read: trust the setting
        return True
    return True


def detect_interface(app: Any) -> Interface:
    """'asgi' when calling the app gives a coroutine, else 'wsgi'."""
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else type(app).__call__
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app):
        return "asgi"
    return "wsgi"


__all__ = ["DEFAULT_REDIS_URL", "SessionConfig", "detect_interface", "is_async_client", "sessions"]
