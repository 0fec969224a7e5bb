"""Server-side sessions in Redis for ASGI and WSGI apps, with per-user epochs that log a
user out everywhere in one step."""

from typing import TYPE_CHECKING

from ._core.user_sessions import SessionInfo, UserState
from ._request_session import get_session
from .asgi import SessionMiddleware
from .config import SessionConfig, sessions
from .epochs import EpochProvider, RedisEpochs
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

__version__ = "0.1.0"  # the one place: pyproject.toml reads it (hatch dynamic version)

if TYPE_CHECKING:
    from .epochs.sql import SQLEpochs

__all__ = [
    "ConfigurationError",
    "CorruptRecord",
    "EpochProvider",
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
    # SQLEpochs needs the optional SQLAlchemy: imported on first use, with a clear
    # ImportError naming the `sql` extra when it is missing.
    if name == "SQLEpochs":
        from .epochs import load_sql_epochs

        return load_sql_epochs()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
