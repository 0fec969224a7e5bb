"""Every error this package raises: one tree under SessionError, each carrying its data.

    SessionError
    ├── ConfigurationError      the settings cannot serve what was asked (also a RuntimeError)
    ├── StoreUnavailable        Redis, or the database holding the epochs, cannot be reached
    │   │                       or failed: a request gets the fail-closed 503
    │   ├── EpochStoreUnavailable     the epoch database
    │   └── InvalidationUncertain     invalidate_user timed out: it may have happened
    ├── NotReplicated           a write reached fewer replicas than asked
    ├── SessionTooLarge         over max_session_bytes (also a ValueError)
    ├── UnknownUser             no such user in the epochs table (also a LookupError)
    └── CorruptRecord           a stored record this package could not have written

None rides on a redis-py exception class: a failure of the Redis layer, whatever its type
(a client library's own bug included), reaches the application as StoreUnavailable with
the original as its ``__cause__``.

There is no conflict error: concurrent writes to one session are merged by the write
script (WRITE in _protocol/lua_scripts.py), key by key, and never retried; a write to a
session ended meanwhile is dropped (Committed.interrupted says why), not raised (Django's engine
alone raises its own UpdateError there, as Django's backends do).
"""

from __future__ import annotations

from typing import Any


class SessionError(Exception):
    """The base of every error session_middleware raises."""


class ConfigurationError(SessionError, RuntimeError):
    """The configuration cannot serve what was asked of it. `problem` says what is wrong,
    `hint` (when there is one) what to do; the message is both."""

    def __init__(self, problem: str = "", hint: str | None = None) -> None:
        super().__init__(f"{problem}: {hint}" if hint else problem)
        self.problem = problem
        self.hint = hint


class StoreUnavailable(SessionError):
    """The session store cannot be reached or failed: no session can be verified."""


def store_failed(operation: str, error: BaseException) -> StoreUnavailable:
    """What a failure of the store becomes: a StoreUnavailable naming the operation and
    the error's type and message, with the error as its ``__cause__``."""
    message = str(error)
    described = f"{type(error).__name__}: {message}" if message else type(error).__name__
    found = StoreUnavailable(f"the session store failed in {operation}: {described}")
    found.__cause__ = error
    return found


class EpochStoreUnavailable(StoreUnavailable):
    """The database holding the epochs cannot be reached."""


class InvalidationUncertain(StoreUnavailable):
    """invalidate_user timed out: Redis may have applied the new epoch, or may still.

    The command may have reached Redis before the answer was lost, and a frozen Redis
    applies it when it resumes. Treat the user as possibly invalidated and call
    invalidate_user again: a second bump ends the same sessions, so retrying is safe.
    """

    def __init__(self, user_operation: str = "invalidate_user") -> None:
        super().__init__(
            f"{user_operation} timed out: the invalidation may have taken effect, or may "
            "still take effect when Redis answers again; retry it (invalidating again is "
            "safe) until it succeeds"
        )


class NotReplicated(SessionError):
    """A write reached fewer replicas than asked before the timeout (it is applied on the
    master, but a failover now could lose it)."""

    def __init__(self, acknowledged: int, wanted: int) -> None:
        super().__init__(
            f"the write reached {acknowledged} of {wanted} replicas before the timeout"
        )
        self.acknowledged = acknowledged
        self.wanted = wanted


class SessionTooLarge(SessionError, ValueError):
    """The session's data exceeds max_session_bytes."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"{what} {size} bytes, over the limit of {limit} (max_session_bytes); "
            "keep large data elsewhere and store its id in the session"
        )


class UnknownUser(SessionError, LookupError):
    """The user has no row in the users table, so there is no epoch to stamp or bump."""

    def __init__(self, message: str, user_id: Any = None) -> None:
        super().__init__(message)
        self.user_id = user_id


class CorruptRecord(SessionError, ValueError):
    """A stored record that is not what this package writes."""


__all__ = [
    "ConfigurationError",
    "CorruptRecord",
    "EpochStoreUnavailable",
    "InvalidationUncertain",
    "NotReplicated",
    "SessionError",
    "SessionTooLarge",
    "StoreUnavailable",
    "UnknownUser",
]
