"""The SQLAlchemy engine of SQLEpochs: given, or built from a URL (sync or async by driver)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import StaticPool

from ..errors import ConfigurationError

ASYNC_HINT = "postgresql+asyncpg://, mysql+aiomysql:// or sqlite+aiosqlite://"
SYNC_HINT = "postgresql+psycopg://, mysql+pymysql:// or sqlite://"


@dataclass(frozen=True)
class EngineHandle:
    """The SQLAlchemy engine SQLEpochs runs on, whether it is async, and whether it is ours
    to dispose."""

    engine: Any  # Engine or AsyncEngine
    is_async: bool
    owned: bool  # built here from a URL, so disposed here

    @property
    def label(self) -> str:
        url: URL = self.engine.url
        return url.drivername


def engine_handle(source: Any, options: Mapping[str, Any] | None) -> EngineHandle:
    if isinstance(source, Engine):
        _no_options(options)
        return EngineHandle(source, is_async=False, owned=False)
    asyncio_ext = sys.modules.get("sqlalchemy.ext.asyncio")
    if asyncio_ext is not None and isinstance(source, asyncio_ext.AsyncEngine):
        _no_options(options)
        return EngineHandle(source, is_async=True, owned=False)
    if not isinstance(source, (str, URL)):
        raise ConfigurationError(
            "SQLEpochs needs a database URL or a SQLAlchemy Engine / AsyncEngine, "
            f"not {type(source).__name__}"
        )
    url = sa.make_url(source)
    kwargs = dict(options or {})
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        # One in-memory database for every thread and request, not one per connection.
        kwargs.setdefault("poolclass", StaticPool)
        kwargs.setdefault("connect_args", {"check_same_thread": False})
    else:
        kwargs.setdefault("pool_pre_ping", True)
    if not url.get_dialect().is_async:
        return EngineHandle(sa.create_engine(url, **kwargs), is_async=False, owned=True)
    try:
        from sqlalchemy.ext.asyncio import create_async_engine
    except ImportError as error:
        raise ImportError(
            f"an async database URL needs SQLAlchemy's asyncio support ({error}); "
            "install session-middleware[sql]"
        ) from error
    return EngineHandle(create_async_engine(url, **kwargs), is_async=True, owned=True)


def _no_options(options: Mapping[str, Any] | None) -> None:
    if options:
        raise ConfigurationError("engine_options only apply when SQLEpochs is given a URL")
