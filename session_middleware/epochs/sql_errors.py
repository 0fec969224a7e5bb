"""The errors SQLEpochs raises, and which database failures mean "unavailable"."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import redis.exceptions
from sqlalchemy import exc


class EpochStoreUnavailable(redis.exceptions.ConnectionError):
    """The database holding the epochs cannot be reached.

    A subclass of redis-py's ConnectionError so that the drivers answer a request that
    needs the database with the same 503 as when Redis is down: fail closed.
    """


class UnknownUser(LookupError):
    """The user has no row in the users table, so there is no epoch to stamp or bump."""


_UNREACHABLE: tuple[type[BaseException], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.TimeoutError,  # no pooled connection became free in time
    OSError,  # asyncpg reports a refused connection as the bare OSError
    asyncio.TimeoutError,
)


def unreachable(error: BaseException) -> bool:
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, _UNREACHABLE)


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn "the database cannot be reached" into EpochStoreUnavailable."""
    try:
        yield
    except EpochStoreUnavailable:
        raise
    except Exception as error:
        if unreachable(error):
            raise EpochStoreUnavailable(f"the epoch database cannot be reached: {error}") from error
        raise
