"""The SQL epochs variant: SQLEpochs.managed on the local PostgreSQL, in a table of the
run's own. Used when this build exports SQLEpochs, skipped with a note otherwise."""

from __future__ import annotations

import os
import re
from typing import Any

import sqlalchemy as sa

SQL_URL = os.environ.get("BENCH_SQL_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def _sync_url() -> str:
    return SQL_URL.replace("+asyncpg", "+psycopg").replace("+aiomysql", "+pymysql")


def table(prefix: str) -> str:
    """The run's table: named after the run's prefix (``smbench:<run>:``), whatever follows."""
    return "smbench_" + re.sub(r"[^a-z0-9]", "_", prefix.split(":")[1].lower())


def unavailable() -> str | None:
    """None when SQLEpochs can be used here, else why not."""
    try:
        from session_middleware import SQLEpochs  # noqa: F401
    except ImportError as error:
        return f"skipped: `from session_middleware import SQLEpochs` fails ({error})"
    engine = sa.create_engine(_sync_url())
    try:
        with engine.connect():
            pass
    except sa.exc.SQLAlchemyError as error:
        return f"skipped: the database at {SQL_URL} cannot be reached ({error.__class__.__name__})"
    finally:
        engine.dispose()
    return None


def create(prefix: str) -> None:
    from session_middleware import SQLEpochs

    provider = SQLEpochs.managed(_sync_url(), table=table(prefix))
    provider.create_table()
    provider.dispose()


def drop(prefix: str) -> None:
    engine = sa.create_engine(_sync_url())
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP TABLE IF EXISTS "{table(prefix)}"'))
    finally:
        engine.dispose()


def provider(prefix: str) -> Any:
    """SQLEpochs on an async engine, with its default Redis cache of epochs."""
    from session_middleware import SQLEpochs

    return SQLEpochs.managed(SQL_URL, table=table(prefix))


async def close(provider: Any) -> None:
    await provider.adispose()
