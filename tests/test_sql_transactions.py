"""bump_in / abump_in: the epoch changes with the app's own transaction, and only then.

For each kind of transaction (Core Connection, ORM Session and their async twins), on
every database: the Redis cache keeps the old epoch until the COMMIT, then holds the new
one under every tag of the user (two secret keys here, so two tags); a rollback, a
session closed without commit, or a later unrelated commit changes nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncSession,
    async_scoped_session,
    async_sessionmaker,
)
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from session_middleware import SessionConfig, sessions
from session_middleware.epochs.sql import SQLEpochs

from .support import OTHER_SECRET, REDIS_URL, SECRET
from .support.redis_servers import free_port
from .support.sql import (
    ASYNC_BACKENDS,
    OLD_HASH,
    SYNC_BACKENDS,
    Backend,
    aepoch_in_db,
    async_users,
    epoch_in_db,
    ids,
    login_epoch,
    sync_users,
)

KINDS = ["connection", "session"]


def rotated_config(epochs: SQLEpochs, key_prefix: str) -> SessionConfig:
    return sessions(
        secret_key=[SECRET, OTHER_SECRET],
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        epochs=epochs,
    )


def cached(config: SessionConfig, user_id: Any) -> list[str | None]:
    """The cached epoch of the user under each of their tags."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return [client.get(config.keys.epoch_key(tag)) for tag in config.keys.user_tags(user_id)]
    finally:
        client.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", SYNC_BACKENDS, ids=ids(SYNC_BACKENDS))
def test_bump_in_publishes_at_commit_only(
    backend: Backend, kind: str, key_prefix: str, tmp_path: Path
) -> None:
    with sync_users(backend, tmp_path) as (epochs, table):
        config = rotated_config(epochs, key_prefix)
        engine = epochs.engine
        old = epochs.bump(1)
        assert cached(config, 1) == [old, old]

        def transaction() -> Any:
            return engine.connect() if kind == "connection" else Session(engine)

        # Rolled back: nothing changes, and the forgotten bump does not ride a later commit.
        with transaction() as tx:
            epochs.bump_in(tx, 1)
            assert cached(config, 1) == [old, old]
            tx.rollback()
            tx.execute(sa.update(table).where(table.c.id == 2).values(password_hash="x"))
            tx.commit()
        assert epoch_in_db(engine, table, 1) == old
        assert cached(config, 1) == [old, old]

        # Closed without a commit: the same.
        with transaction() as tx:
            epochs.bump_in(tx, 1)
        assert epoch_in_db(engine, table, 1) == old
        assert cached(config, 1) == [old, old]

        # Committed: the cache follows, under both tags.
        with transaction() as tx:
            new = epochs.bump_in(tx, 1)
            assert cached(config, 1) == [old, old]
            tx.commit()
        assert epoch_in_db(engine, table, 1) == new
        assert cached(config, 1) == [new, new]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", ASYNC_BACKENDS, ids=ids(ASYNC_BACKENDS))
async def test_abump_in_publishes_at_commit_only(
    backend: Backend, kind: str, key_prefix: str, tmp_path: Path
) -> None:
    async with async_users(backend, tmp_path) as (epochs, table):
        config = rotated_config(epochs, key_prefix)
        engine = epochs.engine
        old = await epochs.abump(1)

        def transaction() -> Any:
            return engine.connect() if kind == "connection" else AsyncSession(engine)

        async with transaction() as tx:
            await epochs.abump_in(tx, 1)
            assert cached(config, 1) == [old, old]
            await tx.rollback()
            await tx.execute(sa.update(table).where(table.c.id == 2).values(password_hash="x"))
            await tx.commit()
        assert await aepoch_in_db(engine, table, 1) == old
        assert cached(config, 1) == [old, old]

        async with transaction() as tx:
            await epochs.abump_in(tx, 1)
        assert await aepoch_in_db(engine, table, 1) == old
        assert cached(config, 1) == [old, old]

        async with transaction() as tx:
            new = await epochs.abump_in(tx, 1)
            assert cached(config, 1) == [old, old]
            await tx.commit()
        assert await aepoch_in_db(engine, table, 1) == new
        assert cached(config, 1) == [new, new]


def test_bump_in_refuses_a_savepoint_and_the_wrong_kind_of_transaction(
    key_prefix: str, tmp_path: Path
) -> None:
    with sync_users(SYNC_BACKENDS[0], tmp_path) as (epochs, _table):
        rotated_config(epochs, key_prefix)
        with (
            Session(epochs.engine) as session,
            session.begin(),
            session.begin_nested(),
            pytest.raises(ValueError, match="savepoint"),
        ):
            epochs.bump_in(session, 1)
        with (
            epochs.engine.begin() as connection,
            connection.begin_nested(),
            pytest.raises(ValueError, match="savepoint"),
        ):
            epochs.bump_in(connection, 1)
        with pytest.raises(TypeError, match="abump_in"):
            epochs.bump_in(epochs.engine, 1)  # type: ignore[arg-type]
        assert epochs.get(1) is None


@pytest.mark.anyio
async def test_abump_in_refuses_a_savepoint_and_sync_transactions(
    key_prefix: str, tmp_path: Path
) -> None:
    async with async_users(ASYNC_BACKENDS[0], tmp_path) as (epochs, _table):
        rotated_config(epochs, key_prefix)
        async with epochs.engine.begin() as connection:
            assert isinstance(connection, AsyncConnection)
            async with connection.begin_nested():
                with pytest.raises(ValueError, match="savepoint"):
                    await epochs.abump_in(connection, 1)
        with Session(sa.create_engine("sqlite://")) as session, pytest.raises(TypeError):
            await epochs.abump_in(session, 1)  # type: ignore[arg-type]
        assert await epochs.aget(1) is None


def test_bump_in_on_an_autocommit_connection_publishes_at_once(
    key_prefix: str, tmp_path: Path
) -> None:
    with sync_users(SYNC_BACKENDS[2], tmp_path) as (epochs, table):
        config = rotated_config(epochs, key_prefix)
        autocommit = epochs.engine.execution_options(isolation_level="AUTOCOMMIT")
        with autocommit.connect() as connection:
            new = epochs.bump_in(connection, 1)
            assert cached(config, 1) == [new, new]
        assert epoch_in_db(epochs.engine, table, 1) == new


def test_a_bump_in_managed_mode_inserts_or_replaces_the_row(
    key_prefix: str, tmp_path: Path
) -> None:
    epochs = SQLEpochs.managed(f"sqlite:///{tmp_path}/managed.db")
    epochs.create_table()
    config = rotated_config(epochs, key_prefix)
    with Session(epochs.engine) as session, session.begin():
        first = epochs.bump_in(session, "carol")
    with Session(epochs.engine) as session, session.begin():
        second = epochs.bump_in(session, "carol")
    assert epochs.get("carol") == second != first
    assert cached(config, "carol") == [second, second]
    epochs.dispose()


@pytest.mark.parametrize("backend", SYNC_BACKENDS[2:], ids=ids(SYNC_BACKENDS[2:]))
def test_a_login_during_a_connection_commit_waits_for_it(
    backend: Backend, key_prefix: str, tmp_path: Path
) -> None:
    """A Connection's copy is written just before its COMMIT: a login in that window sees
    the copy disagree with what it read, and its locking re-read waits for the COMMIT."""
    with sync_users(backend, tmp_path) as (epochs, table):
        config = rotated_config(epochs, key_prefix)
        old = login_epoch(epochs, 1)
        logins: list[str] = []
        login = threading.Thread(target=lambda: logins.append(login_epoch(epochs, 1)))
        waited: list[bool] = []

        def in_the_window(connection: Any) -> None:
            login.start()
            # Until the login reaches the row lock held by this transaction. Not raised
            # here: the connection would be left in the middle of its commit.
            deadline = time.monotonic() + 10
            while not (blocked := blocked_by(epochs.engine, holder, table.name)):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            waited.append(blocked)

        with epochs.engine.connect() as connection:
            holder = session_id(connection)
            new = epochs.bump_in(connection, 1)
            sa.event.listen(connection, "commit", in_the_window)
            connection.commit()
        login.join()
        assert waited == [True]
        assert new != old
        assert logins == [new]
        assert cached(config, 1) == [new, new]


def session_id(connection: Any) -> int:
    """The database's id for `connection`'s session."""
    if connection.dialect.name == "postgresql":
        return int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    return int(connection.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one())


def blocked_by(engine: sa.Engine, holder: int, table: str) -> bool:
    """Whether another session waits for a lock that the session `holder` holds (MariaDB:
    whether another session's statement on `table` is still running, as its lock waits
    are not listed)."""
    if engine.dialect.name == "postgresql":
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE %(holder)s = ANY(pg_blocking_pids(pid))"
        )
    else:
        query = (
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
            " WHERE id NOT IN (%(holder)s, CONNECTION_ID())"
            " AND command = 'Query' AND info LIKE CONCAT('%%', %(table)s, '%%')"
        )
    with engine.connect() as observer:
        found = observer.exec_driver_sql(query, {"holder": holder, "table": table})
        return bool(found.scalar_one())


def test_bump_in_takes_a_scoped_session(key_prefix: str, tmp_path: Path) -> None:
    """Flask-SQLAlchemy's db.session is a scoped_session: its current Session is used."""
    with sync_users(SYNC_BACKENDS[0], tmp_path) as (epochs, table):
        config = rotated_config(epochs, key_prefix)
        registry = scoped_session(sessionmaker(epochs.engine))
        registry.execute(sa.update(table).where(table.c.id == 1).values(password_hash="x"))
        new = epochs.bump_in(registry, 1)
        assert cached(config, 1) == [None, None]
        registry.commit()
        assert cached(config, 1) == [new, new] and epochs.get(1) == new
        registry.remove()


@pytest.mark.anyio
async def test_abump_in_takes_an_async_scoped_session(key_prefix: str, tmp_path: Path) -> None:
    async with async_users(ASYNC_BACKENDS[0], tmp_path) as (epochs, _table):
        config = rotated_config(epochs, key_prefix)
        registry = async_scoped_session(
            async_sessionmaker(epochs.engine), scopefunc=asyncio.current_task
        )
        await epochs.abump_in(registry, 1)
        await registry.rollback()
        assert await epochs.aget(1) is None
        new = await epochs.abump_in(registry, 1)
        await registry.commit()
        assert cached(config, 1) == [new, new] and await epochs.aget(1) == new
        await registry.remove()


@pytest.mark.parametrize("kind", KINDS)
def test_redis_down_at_commit(kind: str, key_prefix: str, tmp_path: Path) -> None:
    """A Session has committed when its after_commit hook fails: the epoch is new in SQL and
    commit() raises. A Connection's hook runs before its COMMIT: nothing is committed."""
    with sync_users(SYNC_BACKENDS[2], tmp_path) as (epochs, table):
        dead_redis = f"redis://127.0.0.1:{free_port()}/0"
        sessions(secret_key=SECRET, redis_url=dead_redis, key_prefix=key_prefix, epochs=epochs)
        engine = epochs.engine
        tx: Any = engine.connect() if kind == "connection" else Session(engine)
        with tx:
            tx.execute(sa.update(table).where(table.c.id == 1).values(password_hash="new"))
            new = epochs.bump_in(tx, 1)
            with pytest.raises(redis.ConnectionError):
                tx.commit()
        with engine.connect() as connection:
            row = connection.execute(sa.select(table).where(table.c.id == 1)).one()
        if kind == "session":
            assert (row.password_hash, row.session_epoch) == ("new", new)
        else:
            assert (row.password_hash, row.session_epoch) == (OLD_HASH, None)
        # No transaction was left open holding the row's lock.
        with engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
            connection.execute(sa.update(table).where(table.c.id == 1).values(password_hash="x"))


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_redis_down_at_commit_async(kind: str, key_prefix: str, tmp_path: Path) -> None:
    async with async_users(ASYNC_BACKENDS[1], tmp_path) as (epochs, table):
        dead_redis = f"redis://127.0.0.1:{free_port()}/0"
        sessions(secret_key=SECRET, redis_url=dead_redis, key_prefix=key_prefix, epochs=epochs)
        engine = epochs.engine
        tx: Any = engine.connect() if kind == "connection" else AsyncSession(engine)
        async with tx:
            await tx.execute(sa.update(table).where(table.c.id == 1).values(password_hash="new"))
            new = await epochs.abump_in(tx, 1)
            with pytest.raises(redis.ConnectionError):
                await tx.commit()
        async with engine.begin() as connection:
            row = (await connection.execute(sa.select(table).where(table.c.id == 1))).one()
            expected = ("new", new) if kind == "session" else (OLD_HASH, None)
            assert (row.password_hash, row.session_epoch) == expected
            await connection.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
            await connection.execute(
                sa.update(table).where(table.c.id == 1).values(password_hash="x")
            )
