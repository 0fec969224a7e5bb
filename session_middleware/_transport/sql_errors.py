"""The errors SQLEpochs raises, and which database failures mean "unavailable"."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc

from ..errors import EpochStoreUnavailable, UnknownUser

__all__ = ["EpochStoreUnavailable", "UnknownUser", "database_errors", "unreachable"]


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
