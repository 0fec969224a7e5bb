"""What the ASGI and WSGI middleware share: a configuration checked for their kind, and the
request cycle on it."""

from __future__ import annotations

from typing import Any

from ._configuration import Configuration
from ._core.epoch_provider import Interface
from ._request_cycle import RequestCycle
from .errors import ConfigurationError


class ConfiguredMiddleware:
    """A middleware of one kind (`interface`) over an app, with its SessionConfig: the
    one given as ``config=``, or one built from the keywords of ``sessions(...)``."""

    interface: Interface

    def __init__(
        self,
        app: Any = None,
        secret_key: Any = None,
        /,
        config: Configuration | None = None,
        **settings: Any,
    ) -> None:
        if "app" in settings:
            # Starlette up to 0.41.2 builds middleware as `cls(*args, app=app, **kwargs)`:
            # the app by keyword, and a key given by position comes first.
            app, secret_key = settings.pop("app"), app
        if app is None:
            raise TypeError(f"{type(self).__name__} needs the app it wraps")
        if secret_key is not None:  # positional, as Starlette's SessionMiddleware takes it
            settings["secret_key"] = secret_key
        if config is None:
            config = Configuration(**settings)
        elif settings:
            raise ConfigurationError(
                f"pass either config= or settings, not both (got {', '.join(sorted(settings))})"
            )
        if not config.secret_keys.given:  # a framework's own key is read by its integration
            raise ConfigurationError("secret_key is required")
        config.check_interface(self.interface)
        self.app = app
        self.config = config
        self._cycle = RequestCycle.of(config)
        self._excluded_paths = config.exclude_paths

    def _excluded(self, path: str) -> bool:
        return bool(self._excluded_paths) and path.startswith(self._excluded_paths)
