"""Server-side sessions in Redis for ASGI and WSGI apps, with per-user epochs that log a
user out everywhere in one step."""

from .access import get_session
from .asgi import SessionMiddleware
from .config import SessionConfig, sessions
from .epochs import EpochProvider, RedisEpochs
from .session import Session
from .users import SessionInfo

__all__ = [
    "EpochProvider",
    "RedisEpochs",
    "Session",
    "SessionConfig",
    "SessionInfo",
    "SessionMiddleware",
    "get_session",
    "sessions",
]
