"""Setting SQLEpochs up: names, engines, the managed table, and the errors on the way.

Names are checked before any SQL is built, and reserved words or mixed case are quoted
by SQLAlchemy; a table that does not fit is refused at first use with a message that
says why; an engine of the wrong face is refused when the app is decorated.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from session_middleware import ConfigurationError, SessionMiddleware, SQLEpochs, sessions

from .support import REDIS_URL, SECRET
from .support.sql import (
    ASYNC_BACKENDS,
    SYNC_BACKENDS,
    Backend,
    alogin_epoch,
    ids,
    login_epoch,
    sync_users,
    unique,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "sql-epochs.md"
DOC_BACKENDS = [SYNC_BACKENDS[0], SYNC_BACKENDS[2], SYNC_BACKENDS[3]]  # one per database


def attach(epochs: SQLEpochs, key_prefix: str) -> SQLEpochs:
    sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, epochs=epochs)
    return epochs


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        {"table": "users; DROP TABLE users"},
        {"table": 'users" --'},
        {"user_column": "id = id OR 1=1"},
        {"epoch_column": "session epoch"},
        {"epoch_column": "1st"},
        {"table": ""},
        {"table": "t" * 64},
        {"schema": "public.users"},
        {"user_column": "x", "epoch_column": "x"},  # one column for both
    ],
)
def test_names_that_are_not_plain_identifiers_are_refused(names: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        SQLEpochs("sqlite://", **names)
    with pytest.raises(ConfigurationError):
        SQLEpochs.managed("sqlite://", **names)


@pytest.mark.parametrize("backend", SYNC_BACKENDS, ids=ids(SYNC_BACKENDS))
def test_reserved_words_and_mixed_case_are_quoted(
    backend: Backend, key_prefix: str, tmp_path: Path
) -> None:
    name = unique("Order")
    table = sa.Table(
        name,
        sa.MetaData(),
        sa.Column("group", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("Select", sa.String(64)),
    )
    epochs = SQLEpochs(
        backend.resolve(tmp_path), table=name, user_column="group", epoch_column="Select"
    )
    attach(epochs, key_prefix)
    with epochs.engine.begin() as connection:
        table.create(connection)
        connection.execute(sa.insert(table), [{"group": 7}])
    try:
        epoch = login_epoch(epochs, 7)
        assert epochs.get(7) == epoch
        assert epochs.bump(7) != epoch
    finally:
        with epochs.engine.begin() as connection:
            table.drop(connection)
        epochs.dispose()


def test_a_column_named_in_another_case_is_found(key_prefix: str, tmp_path: Path) -> None:
    with sync_users(SYNC_BACKENDS[0], tmp_path) as (base, table):
        epochs = attach(
            SQLEpochs(
                base.engine, table=table.name, user_column="ID", epoch_column="Session_Epoch"
            ),
            key_prefix,
        )
        assert login_epoch(epochs, 1) == epochs.get(1) is not None


# -- tables that do not fit ------------------------------------------------------------------


def test_a_table_that_does_not_fit_is_refused_at_first_use(key_prefix: str, tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/misfit.db")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE members (id INTEGER PRIMARY KEY, n INTEGER)")
        connection.exec_driver_sql("CREATE TABLE short (id INTEGER PRIMARY KEY, e VARCHAR(16))")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"table": "nobody"}, "table nobody not found; pass table="),
        ({"table": "members"}, "has no column 'session_epoch'"),
        ({"table": "members", "user_column": "uid", "epoch_column": "n"}, "no column 'uid'"),
        ({"table": "members", "epoch_column": "n"}, "must be a string column"),
        ({"table": "short", "epoch_column": "e"}, r"at least 32 characters, e\.g\. VARCHAR\(64\)"),
    ]
    for names, message in cases:
        epochs = attach(SQLEpochs(engine, **names), key_prefix)
        with pytest.raises(ConfigurationError, match=message):
            epochs.bump(1)
    managed = attach(SQLEpochs.managed(engine), key_prefix)
    with pytest.raises(ConfigurationError, match="create it with create_table"):
        login_epoch(managed, 1)
    with pytest.raises(ConfigurationError, match="create_table is for the managed table"):
        SQLEpochs(engine).create_table()
    engine.dispose()


# -- engines and faces -------------------------------------------------------------------------


def test_the_engine_must_match_the_app(tmp_path: Path) -> None:
    sync_epochs = SQLEpochs(f"sqlite:///{tmp_path}/e.db")
    async_epochs = SQLEpochs(f"sqlite+aiosqlite:///{tmp_path}/e.db")
    assert (sync_epochs.is_async, async_epochs.is_async) == (False, True)

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("never called")

    def wsgi_app(environ: Any, start_response: Any) -> Any:
        raise AssertionError("never called")

    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, epochs=sync_epochs)
    with pytest.raises(ConfigurationError, match=r"ASGI app needs SQLEpochs on an async engine"):
        config(asgi_app)
    with pytest.raises(ConfigurationError, match="sqlite\\+aiosqlite"):
        SessionMiddleware(asgi_app, secret_key=SECRET, redis_url=REDIS_URL, epochs=sync_epochs)
    assert config(wsgi_app) is not None

    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, epochs=async_epochs)
    with pytest.raises(ConfigurationError, match="WSGI app needs SQLEpochs on a sync engine"):
        config(wsgi_app)
    assert config(asgi_app) is not None

    with pytest.raises(ConfigurationError, match=r"call the async twin abump\(\)"):
        async_epochs.bump(1)
    with pytest.raises(ConfigurationError, match=r"call the async twin acreate_table\(\)"):
        SQLEpochs.managed(async_epochs.engine).create_table()
    sync_epochs.dispose()


@pytest.mark.anyio
async def test_async_methods_need_an_async_engine(tmp_path: Path, key_prefix: str) -> None:
    sync_epochs = attach(SQLEpochs(f"sqlite:///{tmp_path}/e.db"), key_prefix)
    with pytest.raises(ConfigurationError, match=r"call the sync twin bump\(\)"):
        await sync_epochs.abump(1)
    with pytest.raises(ConfigurationError, match="needs an async database engine"):
        await alogin_epoch(sync_epochs, 1)  # a step of a sync engine, on the async runner
    await sync_epochs.adispose()


def test_what_sqlepochs_accepts(tmp_path: Path) -> None:
    engine = sa.create_engine("sqlite://")
    with pytest.raises(ConfigurationError, match="URL or a SQLAlchemy Engine"):
        SQLEpochs(42)
    with pytest.raises(ConfigurationError, match="engine_options only apply"):
        SQLEpochs(engine, engine_options={"echo": True})
    for ttl in (-1, True, "300", 0.0001):
        with pytest.raises(ConfigurationError, match="cache_ttl"):
            SQLEpochs(engine, cache_ttl=ttl)  # type: ignore[arg-type]
    assert SQLEpochs(engine, cache_ttl=0.25).cache_ttl == 0.25
    assert SQLEpochs(engine, cache_ttl=0).cached_key("tag") is None
    built = SQLEpochs(f"sqlite:///{tmp_path}/o.db", engine_options={"pool_size": 3})
    assert built.engine.pool.size() == 3
    assert repr(built) == "<SQLEpochs users on sqlite>"
    built.dispose()


def test_a_provider_not_attached_to_a_configuration_refuses_before_writing(
    tmp_path: Path,
) -> None:
    with sync_users(SYNC_BACKENDS[0], tmp_path) as (epochs, _table):
        with pytest.raises(RuntimeError, match=r"pass it to sessions\(epochs=...\)"):
            epochs.bump(1)
        with epochs.engine.begin() as connection, pytest.raises(RuntimeError):
            epochs.bump_in(connection, 1)
        assert epochs.get(1) is None


def test_an_in_memory_sqlite_url_is_one_database_for_every_thread(key_prefix: str) -> None:
    epochs = attach(SQLEpochs.managed("sqlite://"), key_prefix)
    epochs.create_table()
    done: list[str] = []
    worker = threading.Thread(target=lambda: done.append(epochs.bump("dora")))
    worker.start()
    worker.join()
    assert epochs.get("dora") == done[0]
    epochs.dispose()


def test_the_package_imports_without_sqlalchemy() -> None:
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'sqlalchemy':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import session_middleware\n"
        "from session_middleware import sessions, RedisEpochs\n"
        "try:\n"
        "    from session_middleware import SQLEpochs\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocker], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == (
        "SQLEpochs needs SQLAlchemy: pip install 'session-middleware[sql]'"
    )


# -- the managed table ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", SYNC_BACKENDS, ids=ids(SYNC_BACKENDS))
def test_managed_table(backend: Backend, key_prefix: str, tmp_path: Path) -> None:
    epochs = attach(SQLEpochs.managed(backend.resolve(tmp_path), table=unique("sm_ep")), key_prefix)
    epochs.create_table()
    epochs.create_table()  # idempotent
    try:
        first = login_epoch(epochs, "42")
        assert login_epoch(epochs, 42) == first  # "42" and 42 are one user, as in Redis keys
        bumped = epochs.bump(42)
        assert epochs.get("42") == bumped != first
        fresh = epochs.bump("never-logged-in")  # a managed table has no unknown users
        assert epochs.get("never-logged-in") == fresh
        with pytest.raises(TypeError):
            epochs.bump(4.2)  # type: ignore[arg-type]
    finally:
        with epochs.engine.begin() as connection:
            epochs._spec.definition().drop(connection)
        epochs.dispose()


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ASYNC_BACKENDS, ids=ids(ASYNC_BACKENDS))
async def test_managed_table_async(backend: Backend, key_prefix: str, tmp_path: Path) -> None:
    epochs = attach(SQLEpochs.managed(backend.resolve(tmp_path), table=unique("sm_ep")), key_prefix)
    await epochs.acreate_table()
    try:
        first = await alogin_epoch(epochs, 42)
        assert await alogin_epoch(epochs, "42") == first
        bumped = await epochs.abump("42")
        assert await epochs.aget(42) == bumped != first
    finally:
        async with epochs.engine.begin() as connection:
            await connection.run_sync(epochs._spec.definition().drop)
        await epochs.adispose()


def documented_create_table() -> str:
    blocks = re.findall(r"```sql\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    found = [block for block in blocks if "CREATE TABLE session_epochs" in block]
    assert len(found) == 1, "docs/sql-epochs.md shows the managed table's CREATE TABLE once"
    lines = [line for line in found[0].splitlines() if not line.startswith("--")]
    return "\n".join(lines).strip().rstrip(";")


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "mariadb", "sqlite"])
def test_the_documented_create_table_is_the_one_create_table_runs(dialect: str) -> None:
    generated = SQLEpochs.managed("sqlite://").create_table_sql(dialect)
    assert " ".join(documented_create_table().split()) == " ".join(generated.split())


@pytest.mark.parametrize("backend", DOC_BACKENDS, ids=ids(DOC_BACKENDS))
def test_the_documented_create_table_runs(
    backend: Backend, key_prefix: str, tmp_path: Path
) -> None:
    name = unique("sm_doc")
    statement = documented_create_table().replace("session_epochs", name)
    epochs = attach(SQLEpochs.managed(backend.resolve(tmp_path), table=name), key_prefix)
    with epochs.engine.begin() as connection:
        connection.exec_driver_sql(statement)
    try:
        assert epochs.bump("erin") == epochs.get("erin")
    finally:
        with epochs.engine.begin() as connection:
            epochs._spec.definition().drop(connection)
        epochs.dispose()
