"""Where each user's epoch lives: in Redis (RedisEpochs) or in an SQL database (SQLEpochs).

SQLEpochs needs SQLAlchemy (the `sql` extra), so it is imported on first use: the rest
of the package works without SQLAlchemy installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .redis import RedisEpochs

if TYPE_CHECKING:
    from .sql import SQLEpochs

__all__ = ["RedisEpochs", "SQLEpochs"]


def __getattr__(name: str) -> Any:
    if name == "SQLEpochs":
        return load_sql_epochs()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_sql_epochs() -> Any:
    try:
        from .sql import SQLEpochs
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] != "sqlalchemy":
            raise
        raise ImportError(
            "SQLEpochs needs SQLAlchemy: pip install 'session-middleware[sql]'",
            name="sqlalchemy",
        ) from error
    return SQLEpochs
