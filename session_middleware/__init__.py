"""Server-side sessions in Redis for ASGI and WSGI apps, with per-user epochs that log a
user out everywhere in one step."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.2.0"  # the one place: pyproject.toml reads it (hatch dynamic version)

if TYPE_CHECKING:
    from ._core.user_sessions import SessionInfo, UserState
    from ._request_session import get_session
    from .asgi import SessionMiddleware
    from .config import SessionConfig, sessions
    from .epochs import RedisEpochs
    from .epochs.sql import SQLEpochs
    from .errors import (
        ConfigurationError,
        CorruptRecord,
        EpochStoreUnavailable,
        InvalidationUncertain,
        NotReplicated,
        SessionError,
        SessionTooLarge,
        StoreUnavailable,
        UnknownUser,
    )
    from .events import SessionEvent
    from .session import Session

# Each public name is imported on first use, so that importing the package (the pytest
# plugin of session_middleware.testing does, in every test run) loads no Redis client.
_HOMES = {
    "SessionInfo": "._core.user_sessions",
    "UserState": "._core.user_sessions",
    "get_session": "._request_session",
    "SessionMiddleware": ".asgi",
    "SessionConfig": ".config",
    "sessions": ".config",
    "RedisEpochs": ".epochs",
    "ConfigurationError": ".errors",
    "CorruptRecord": ".errors",
    "EpochStoreUnavailable": ".errors",
    "InvalidationUncertain": ".errors",
    "NotReplicated": ".errors",
    "SessionError": ".errors",
    "SessionTooLarge": ".errors",
    "StoreUnavailable": ".errors",
    "UnknownUser": ".errors",
    "SessionEvent": ".events",
    "Session": ".session",
}

__all__ = [
    "ConfigurationError",
    "CorruptRecord",
    "EpochStoreUnavailable",
    "InvalidationUncertain",
    "NotReplicated",
    "RedisEpochs",
    "SQLEpochs",
    "Session",
    "SessionConfig",
    "SessionError",
    "SessionEvent",
    "SessionInfo",
    "SessionMiddleware",
    "SessionTooLarge",
    "StoreUnavailable",
    "UnknownUser",
    "UserState",
    "get_session",
    "sessions",
]


def __getattr__(name: str) -> object:
    if name == "SQLEpochs":
        # SQLEpochs needs the optional SQLAlchemy: a clear ImportError naming the `sql`
        # extra when it is missing.
        from .epochs import load_sql_epochs

        return load_sql_epochs()
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
