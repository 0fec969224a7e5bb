"""Testing an app that uses session_middleware.

``log_in(client, user_id, data)`` (and ``await alog_in(...)``) logs a test client in:
Starlette's ``TestClient``, httpx's ``Client`` and ``AsyncClient`` (ASGI and WSGI
transports) and Flask's test client. The pytest fixtures (a real, throwaway Redis) are in
``session_middleware.testing.pytest_plugin``, loaded by pytest on its own. ``FreezingProxy``
sits between an app and Redis and can freeze the traffic, to test that the app fails closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._freezing_proxy import FreezingProxy
    from ._log_in import alog_in, log_in

__all__ = ["FreezingProxy", "alog_in", "log_in"]


def __getattr__(name: str) -> object:
    # Imported on first use: the pytest plugin, a submodule, loads in every test run.
    if name == "FreezingProxy":
        from ._freezing_proxy import FreezingProxy

        return FreezingProxy
    if name in __all__:
        from . import _log_in

        return getattr(_log_in, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
