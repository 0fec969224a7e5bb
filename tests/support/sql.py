"""Helpers for the SQLEpochs tests: the real databases, a users table per test, two apps.

Every test builds its own uniquely named table and drops it afterwards. The apps are a
Flask app (sync engines, over httpx.WSGITransport) and a Starlette app (async engines,
over httpx.ASGITransport) with the same routes: login, who am I, and a password reset
that updates the hash and bumps the epoch in one transaction of the app's own.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from session_middleware import SessionConfig, get_session
from session_middleware._core.runners import drive_async, drive_sync
from session_middleware.epochs.sql import SQLEpochs
from session_middleware.events import Listeners

WSGI_REJECTED = "session_middleware.rejected"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
APG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
MY = "mysql+pymysql://root@127.0.0.1:3306/test"
AMY = "mysql+aiomysql://root@127.0.0.1:3306/test"
USERS = (1, 2, 3)
OLD_HASH = "old-hash"


@dataclass(frozen=True)
class Backend:
    name: str
    url: str  # "{tmp}" is replaced by the test's temporary directory

    def resolve(self, tmp: Path) -> str:
        return self.url.replace("{tmp}", str(tmp))


SYNC_BACKENDS = [
    Backend("sqlite-file", "sqlite:///{tmp}/epochs.db"),
    Backend("sqlite-memory", "sqlite://"),
    Backend("postgresql-psycopg", PG),
    Backend("mariadb-pymysql", MY),
]
ASYNC_BACKENDS = [
    Backend("sqlite-aiosqlite", "sqlite+aiosqlite:///{tmp}/epochs.db"),
    Backend("postgresql-asyncpg", APG),
    Backend("mariadb-aiomysql", AMY),
]


def ids(backends: list[Backend]) -> list[str]:
    return [backend.name for backend in backends]


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def users_table(name: str, id_type: Any = None) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column(
            "id",
            id_type if id_type is not None else sa.Integer(),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("password_hash", sa.String(100), nullable=False),
        sa.Column("session_epoch", sa.String(64), nullable=True),
    )


def user_rows(ids: tuple[Any, ...] = USERS) -> list[dict[str, Any]]:
    return [{"id": i, "password_hash": OLD_HASH, "session_epoch": None} for i in ids]


def fail_if_down(error: Exception, backend: Backend) -> None:
    pytest.fail(f"{backend.name}: the database is not answering ({error}); run .ci/start-services")


@contextlib.contextmanager
def sync_users(
    backend: Backend,
    tmp: Path,
    id_type: Any = None,
    rows: list[dict[str, Any]] | None = None,
    **options: Any,
) -> Iterator[tuple[SQLEpochs, sa.Table]]:
    """SQLEpochs on a fresh users table of its own (sync engine), dropped afterwards."""
    table = users_table(unique("sm_users"), id_type)
    epochs = SQLEpochs(backend.resolve(tmp), table=table.name, **options)
    try:
        with epochs.engine.begin() as connection:
            table.create(connection)
            connection.execute(sa.insert(table), rows if rows is not None else user_rows())
    except sa.exc.OperationalError as error:
        fail_if_down(error, backend)
    try:
        yield epochs, table
    finally:
        with epochs.engine.begin() as connection:
            table.drop(connection)
        epochs.dispose()


@contextlib.asynccontextmanager
async def async_users(
    backend: Backend,
    tmp: Path,
    id_type: Any = None,
    rows: list[dict[str, Any]] | None = None,
    **options: Any,
) -> AsyncIterator[tuple[SQLEpochs, sa.Table]]:
    """SQLEpochs on a fresh users table of its own (async engine), dropped afterwards."""
    table = users_table(unique("sm_users"), id_type)
    epochs = SQLEpochs(backend.resolve(tmp), table=table.name, **options)
    engine: AsyncEngine = epochs.engine
    try:
        async with engine.begin() as connection:
            await connection.run_sync(table.create)
            await connection.execute(sa.insert(table), rows if rows is not None else user_rows())
    except (sa.exc.OperationalError, OSError) as error:
        await epochs.adispose()
        fail_if_down(error, backend)
    try:
        yield epochs, table
    finally:
        async with engine.begin() as connection:
            await connection.run_sync(table.drop)
        await epochs.adispose()


class SqlCounter:
    """Counts the statements an engine sends to the database."""

    def __init__(self, engine: Any) -> None:
        self.statements: list[str] = []
        self._engine = getattr(engine, "sync_engine", engine)
        sa.event.listen(self._engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        self.statements.append(args[2])

    def close(self) -> None:
        sa.event.remove(self._engine, "before_cursor_execute", self._seen)


def epoch_in_db(engine: sa.Engine, table: sa.Table, user_id: Any) -> str | None:
    with engine.connect() as connection:
        query = sa.select(table.c.session_epoch).where(table.c.id == user_id)
        return connection.execute(query).scalar()


async def aepoch_in_db(engine: AsyncEngine, table: sa.Table, user_id: Any) -> str | None:
    async with engine.connect() as connection:
        query = sa.select(table.c.session_epoch).where(table.c.id == user_id)
        return (await connection.execute(query)).scalar()


# -- the apps ------------------------------------------------------------------------------


class ResetFailed(Exception):
    """Raised by a reset asked to fail after the bump, so that its transaction rolls back."""


def flask_app(config: SessionConfig, epochs: SQLEpochs, table: sa.Table, tx: str) -> Any:
    """A Flask app whose password reset bumps the epoch through a Connection or Session."""
    app = flask.Flask(__name__)
    engine = epochs.engine

    @app.post("/login/<int:user_id>")
    def login(user_id: int) -> str:
        get_session(flask.request).login(user_id)
        return "in"

    @app.post("/others")
    def others() -> str:
        get_session(flask.request).logout_others()
        return "others out"

    @app.get("/me")
    def me() -> Any:
        session = get_session(flask.request)
        return {"user": session.user_id, "rejected": flask.request.environ.get(WSGI_REJECTED)}

    @app.post("/reset/<int:user_id>")
    def reset(user_id: int) -> Any:
        fail = flask.request.args.get("fail") == "1"
        change = sa.update(table).where(table.c.id == user_id).values(password_hash="new-hash")
        try:
            if tx == "connection":
                with engine.begin() as connection:
                    connection.execute(change)
                    epochs.bump_in(connection, user_id)
                    if fail:
                        raise ResetFailed
            else:
                with Session(engine) as session, session.begin():
                    session.execute(change)
                    epochs.bump_in(session, user_id)
                    if fail:
                        raise ResetFailed
        except ResetFailed:
            return "rolled back", 409
        return "reset"

    return config(app)


def starlette_app(config: SessionConfig, epochs: SQLEpochs, table: sa.Table, tx: str) -> Any:
    """The Starlette twin of flask_app, on an async engine."""
    engine: AsyncEngine = epochs.engine

    async def login(request: Request) -> PlainTextResponse:
        request.session.login(int(request.path_params["user_id"]))
        return PlainTextResponse("in")

    async def others(request: Request) -> PlainTextResponse:
        request.session.logout_others()
        return PlainTextResponse("others out")

    async def me(request: Request) -> JSONResponse:
        session = get_session(request)
        return JSONResponse(
            {"user": session.user_id, "rejected": request.scope.get("session_rejected")}
        )

    async def reset(request: Request) -> PlainTextResponse:
        user_id = int(request.path_params["user_id"])
        fail = request.query_params.get("fail") == "1"
        change = sa.update(table).where(table.c.id == user_id).values(password_hash="new-hash")
        try:
            if tx == "connection":
                async with engine.begin() as connection:
                    await connection.execute(change)
                    await epochs.abump_in(connection, user_id)
                    if fail:
                        raise ResetFailed
            else:
                async with AsyncSession(engine) as session, session.begin():
                    await session.execute(change)
                    await epochs.abump_in(session, user_id)
                    if fail:
                        raise ResetFailed
        except ResetFailed:
            return PlainTextResponse("rolled back", status_code=409)
        return PlainTextResponse("reset")

    routes = [
        Route("/login/{user_id:int}", login, methods=["POST"]),
        Route("/me", me),
        Route("/others", others, methods=["POST"]),
        Route("/reset/{user_id:int}", reset, methods=["POST"]),
    ]
    return config(Starlette(routes=routes))


def login_epoch(epochs: Any, user_id: Any) -> Any:
    """The provider's login step, run on the sync runner against its configuration's Redis."""
    return drive_sync(epochs.login_epoch(user_id), epochs._context.redis, Listeners())


async def alogin_epoch(epochs: Any, user_id: Any) -> Any:
    """The provider's login step, run on the async runner."""
    return await drive_async(epochs.login_epoch(user_id), epochs._context.redis, Listeners())
