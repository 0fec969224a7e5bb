"""SQLEpochs: each user's epoch lives in the app's own database, cached in Redis.

The database holds the truth, so a password change and the epoch bump can commit in
one transaction (`bump_in` / `abump_in`). Redis holds a copy at the key the request path
reads beside the session record, so a logged-in request still costs one Redis round trip
and no query. How long a change made in SQL outside this API can go unnoticed is bounded
by `cache_ttl`; docs/sql-epochs.md tells the whole story.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, scoped_session

from .._core.epoch_provider import (
    EpochContext,
    Interface,
    SessionRedis,
    StampedRecord,
    new_epoch,
    still_stamped,
)
from .._core.runners import drive_async, drive_sync
from .._core.steps import RedisIO, RedisSource, SqlIO, Step
from .._protocol.key_layout import UserId
from .._protocol.timing import cache_ttl_ms
from .._protocol.wire import Command, text
from .._transport.round_trip import AsyncRedisClient, run_async, run_sync, sync_ran
from .._transport.sql_errors import EpochStoreUnavailable, UnknownUser
from ..errors import ConfigurationError, StoreUnavailable
from ..events import Listeners
from ._faces import ProviderFaces
from ._sql_cache import EpochCache
from ._sql_engine import ASYNC_HINT, SYNC_HINT, EngineHandle, engine_handle
from ._sql_schema import EpochTable, TableSpec
from ._sql_tx import on_commit, sync_target

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import (
        AsyncConnection,
        AsyncSession,
        async_scoped_session,
    )

DEFAULT_CACHE_TTL = 300.0

__all__ = ["EpochStoreUnavailable", "SQLEpochs", "UnknownUser"]


class SQLEpochs(ProviderFaces):
    """Epochs in a SQL table, through SQLAlchemy Core.

    ``SQLEpochs(engine_or_url, table="users", user_column="id",
    epoch_column="session_epoch")`` uses a column of your users table (a nullable
    string column of at least 32 characters; a user without a row is unknown).
    ``SQLEpochs.managed(engine_or_url)`` keeps a table of its own instead, created by
    ``create_table()`` or by your migrations (``create_table_sql()``).

    engine_or_url: a URL, an Engine (sync: WSGI apps, the sync methods) or an
        AsyncEngine (async: ASGI apps, the a-prefixed methods).
    cache_ttl: seconds Redis keeps its copy of an epoch; the longest a change made in
        SQL outside this API goes unnoticed. 0 turns the cache off: every logged-in
        request then queries the database.
    schema: the schema (PostgreSQL) or database (MySQL) of the table, if not the default.
    engine_options: keyword arguments for create_engine when given a URL.
    """

    def __init__(
        self,
        engine_or_url: Any,
        *,
        table: str = "users",
        user_column: str = "id",
        epoch_column: str = "session_epoch",
        schema: str | None = None,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        spec = TableSpec(table, user_column, epoch_column, schema, managed=False)
        self._setup(engine_or_url, spec, cache_ttl, engine_options)

    @classmethod
    def managed(
        cls,
        engine_or_url: Any,
        *,
        table: str = "session_epochs",
        user_column: str = "user_id",
        epoch_column: str = "epoch",
        schema: str | None = None,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        engine_options: Mapping[str, Any] | None = None,
    ) -> SQLEpochs:
        """Epochs in a table of their own: one row per user who ever logged in."""
        self = cls.__new__(cls)
        spec = TableSpec(table, user_column, epoch_column, schema, managed=True)
        self._setup(engine_or_url, spec, cache_ttl, engine_options)
        return self

    def _setup(
        self,
        source: Any,
        spec: TableSpec,
        cache_ttl: float,
        engine_options: Mapping[str, Any] | None,
    ) -> None:
        self._spec = spec
        self._ttl_ms = cache_ttl_ms(cache_ttl)
        self._handle: EngineHandle = engine_handle(source, engine_options)
        self._checked: EpochTable | None = None
        self._context: EpochContext | None = None
        self._cache: EpochCache | None = None

    def __repr__(self) -> str:
        kind = "managed " if self._spec.managed else ""
        return f"<SQLEpochs {kind}{self._spec.qualified} on {self._handle.label}>"

    @property
    def engine(self) -> Any:
        """The Engine or AsyncEngine the epochs are read and written through."""
        return self._handle.engine

    @property
    def is_async(self) -> bool:
        return self._handle.is_async

    @property
    def cache_ttl(self) -> float:
        return self._ttl_ms / 1000

    # -- the provider protocol: set-up ------------------------------------------------

    def attach(self, context: EpochContext) -> None:
        self._context = context
        self._cache = EpochCache(context.keys, self._ttl_ms) if self._ttl_ms else None

    def check_interface(self, interface: Interface) -> None:
        label = self._handle.label
        if interface == "asgi" and not self.is_async:
            raise ConfigurationError(
                f"an ASGI app needs SQLEpochs on an async engine ({ASYNC_HINT}); "
                f"this one is on {label}, which is sync"
            )
        if interface == "wsgi" and self.is_async:
            raise ConfigurationError(
                f"a WSGI app needs SQLEpochs on a sync engine ({SYNC_HINT}); "
                f"this one is on {label}, which is async"
            )

    # -- the provider protocol: the request path ------------------------------------------

    @property
    def restamps(self) -> bool:
        return self._cache is not None  # with the copy: COPY_AND_RESTAMP

    def cached_key(self, tag: str) -> str | None:
        return None if self._cache is None else self._cache.key(tag)

    def resolve(self, user_id: UserId, tag: str, cached: str | None) -> Step[str | None]:
        if cached is not None:
            return cached
        epoch = yield self._sql(lambda c: self._read_if_valid(c, user_id))
        if epoch is None or self._cache is None:
            return epoch  # type: ignore[no-any-return]
        (held,) = yield RedisIO((self._cache.fill(self._cache.key(tag), None, epoch),))
        return text(held)

    def login_mode(self) -> Literal["ensure", "given"]:
        # 'given': the login script leaves the cache alone; login_epoch has filled it
        # with the cache's own TTL and without overwriting a newer bump.
        return "given"

    def login_epoch(self, user_id: UserId) -> Step[str | None]:
        self._redis()  # refuse before any write, not between the SQL and the cache
        epoch: str = yield self._sql(lambda c: self._table(c).ensure(c, user_id))
        cache = self._cache
        if cache is None:
            return epoch
        key = cache.login_key(user_id)
        (reply,) = yield RedisIO((cache.fill(key, None, epoch),))
        held = text(reply)
        if held == epoch:
            return epoch
        # The cache disagrees with what we read: a bump committed since (the cache is
        # newer), or the column was changed outside this API (the cache is stale). A
        # locking read waits for a bump in flight and settles it.
        fresh: str = yield self._sql(lambda c: self._table(c).ensure(c, user_id, lock=True))
        if fresh != held:
            yield RedisIO((cache.fill(key, held, fresh),))
        return fresh

    def bump_if(
        self,
        user_id: UserId,
        tag: str,
        expected: str,
        session: StampedRecord | None = None,
        restamp: bool = False,
    ) -> Step[str | None]:
        """The compare-and-set runs in the database; then, given `session` and `restamp`,
        one script writes the copy under `tag` and re-stamps `session` (see
        EpochCache.restamping), so no request of it finds the copy new and its
        stamp old. Once the database has committed, the copy must follow: a round trip
        that fails is sent once more (its commands are safe to repeat), and a second
        failure is raised, for the request to end its session (Core._write)."""
        epoch = new_epoch()
        commands = self._publish_commands(user_id, epoch)
        if not (yield from still_stamped(session)):
            return None
        moved = yield self._sql(lambda c: self._table(c).write_if(c, user_id, expected, epoch))
        if not moved:
            return None
        if self._cache is not None and session is not None and restamp:
            commands = self._cache.restamping(commands, tag, epoch, session)
        if commands:
            try:
                yield RedisIO(tuple(commands))
            except StoreUnavailable:
                yield RedisIO(tuple(commands))
        return epoch

    # -- the provider protocol: the public API ------------------------------------------

    def read_epoch(self, user_id: UserId) -> Step[str | None]:
        """The user's epoch as the database holds it; None if they have none."""
        epoch = yield self._sql(lambda c: self._table(c).read(c, user_id))
        return epoch  # type: ignore[no-any-return]

    def bump_epoch(self, user_id: UserId) -> Step[str]:
        """Give the user a new epoch in its own transaction, then update the cache.

        Raises UnknownUser if the users table has no such user, TypeError if the id is
        not of the user column's type.
        """
        epoch = new_epoch()
        commands = self._publish_commands(user_id, epoch)
        yield self._sql(lambda c: self._table(c).write(c, user_id, epoch))
        if commands:
            yield RedisIO(tuple(commands))
        return epoch

    # -- bumping inside the app's own transaction -----------------------------------------

    def bump_in(
        self, transaction: Connection | Session | scoped_session[Any], user_id: UserId
    ) -> str:
        """Give the user a new epoch inside the transaction of `transaction`.

        The epoch changes when that transaction commits, together with everything else
        it holds (a new password hash, say); the Redis cache follows at the commit. A
        rollback leaves every session valid. `transaction` is a Connection, a Session,
        or a scoped_session (Flask-SQLAlchemy's ``db.session``).
        """
        if isinstance(transaction, scoped_session):
            transaction = transaction()
        if not isinstance(transaction, (Connection, Session)):
            raise TypeError(
                "bump_in takes a sync SQLAlchemy Connection or Session; "
                "use `await abump_in(...)` with an AsyncConnection or AsyncSession"
            )
        _refuse_savepoint(transaction)
        epoch = new_epoch()
        commands = self._publish_commands(user_id, epoch)
        redis = self._redis()
        client = redis.sync() if commands else None
        if isinstance(transaction, Connection):
            connection = transaction
        else:
            connection = transaction.connection()
        self._table(connection).write(connection, user_id, epoch)
        if commands:
            on_commit(transaction, lambda: _publish_sync(redis, client, commands))
        return epoch

    async def abump_in(
        self,
        transaction: AsyncConnection | AsyncSession | async_scoped_session[Any],
        user_id: UserId,
    ) -> str:
        """The async twin of bump_in: an AsyncConnection, AsyncSession or async_scoped_session."""
        from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_scoped_session

        if isinstance(transaction, async_scoped_session):
            transaction = transaction()
        if not isinstance(transaction, (AsyncConnection, AsyncSession)):
            raise TypeError(
                "abump_in takes an AsyncConnection or AsyncSession; "
                "use bump_in(...) with a sync Connection or Session"
            )
        _refuse_savepoint(transaction)
        epoch = new_epoch()
        commands = self._publish_commands(user_id, epoch)
        client = self._redis().async_() if commands else None
        if isinstance(transaction, AsyncConnection):
            connection = transaction
        else:
            connection = await transaction.connection()
        await connection.run_sync(lambda c: self._table(c).write(c, user_id, epoch))
        if client is not None:
            redis_client: AsyncRedisClient = client
            driver: Any = (await connection.get_raw_connection()).dbapi_connection
            # Commit events are sync functions; `run_async` is SQLAlchemy's documented
            # way to await inside one (the driver connection it passes is not needed).
            on_commit(
                sync_target(transaction),
                lambda: driver.run_async(lambda _: run_async(redis_client, commands)),
            )
        return epoch

    # -- the managed table ------------------------------------------------------------------

    def create_table(self) -> None:
        """Create the managed table if it does not exist."""
        drive_sync(self._create_table(), self._sync_redis("create_table"), Listeners())

    async def acreate_table(self) -> None:
        """The async twin of create_table."""
        await drive_async(self._create_table(), self._async_redis("create_table"), Listeners())

    def _create_table(self) -> Step[None]:
        definition = self._managed_definition()
        yield self._sql(lambda c: definition.create(c, checkfirst=True))

    def create_table_sql(self, dialect: str | None = None) -> str:
        """The CREATE TABLE statement of the managed table, for migrations.

        dialect: 'postgresql', 'mysql', 'mariadb', 'sqlite'...; default: the engine's.
        """
        self._managed_definition()
        if dialect is None:
            return self._spec.create_sql(self.engine.dialect)
        return self._spec.create_sql(sa.make_url(f"{dialect}://").get_dialect()())

    def dispose(self) -> None:
        """Close the connection pool of an engine built from a URL (a given one is yours)."""
        if self._handle.owned:
            if self.is_async:
                raise ConfigurationError("an async engine is disposed with `await adispose()`")
            self.engine.dispose()

    async def adispose(self) -> None:
        if self._handle.owned:
            if self.is_async:
                await self.engine.dispose()
            else:
                self.engine.dispose()

    # -- plumbing ---------------------------------------------------------------------------

    def _sql(self, run: Callable[[Connection], Any]) -> SqlIO:
        return SqlIO(self.engine, self.is_async, run)

    def _read_if_valid(self, connection: Connection, user_id: UserId) -> str | None:
        table = self._table(connection)
        try:
            table.user_value(user_id)
        except (TypeError, ValueError):
            return None  # a session of an id this column cannot hold has no epoch
        return table.read(connection, user_id)

    def _table(self, connection: Connection) -> EpochTable:
        checked = self._checked
        if checked is None:
            checked = self._checked = self._spec.inspect(connection)
        return checked

    def _managed_definition(self) -> sa.Table:
        if not self._spec.managed:
            raise ConfigurationError(
                "create_table is for the managed table (SQLEpochs.managed(...)); "
                "this SQLEpochs uses your own users table"
            )
        return self._spec.definition()

    def _publish_commands(self, user_id: UserId, epoch: str) -> list[Command]:
        """The cache writes of a bump to `epoch` (checks the id and the attachment first)."""
        self._redis()
        return [] if self._cache is None else self._cache.publish(user_id, epoch)

    def _redis(self) -> SessionRedis:
        if self._context is None:
            raise RuntimeError(
                "SQLEpochs is not attached to a configuration yet: pass it to sessions(epochs=...)"
            )
        return self._context.redis

    def _runner_redis(self, method: str, is_async: bool) -> RedisSource:
        """Refuse a face the engine does not serve; the session Redis, once attached."""
        if is_async and not self.is_async:
            raise ConfigurationError(
                f"SQLEpochs.a{method}() needs an async engine, but this one is on "
                f"{self._handle.label}: call the sync twin {method}() instead"
            )
        if self.is_async and not is_async:
            raise ConfigurationError(
                f"SQLEpochs.{method}() needs a sync engine, but this one is on "
                f"{self._handle.label}: call the async twin a{method}() instead"
            )
        return _AttachedRedis(self)


def _publish_sync(redis: Any, client: Any, commands: Sequence[Command]) -> None:
    try:
        run_sync(client, commands)
    finally:
        sync_ran(redis, commands)


class _AttachedRedis:
    """The session Redis of a provider, looked up only when a step asks for it."""

    def __init__(self, epochs: SQLEpochs) -> None:
        self._epochs = epochs

    def sync(self) -> Any:
        return self._epochs._redis().sync()

    def async_(self) -> Any:
        return self._epochs._redis().async_()

    def async_blocking(self) -> Any:
        return self._epochs._redis().async_blocking()

    def sync_wrote(self, commands: Sequence[Command]) -> None:
        sync_ran(self._epochs._redis(), commands)


def _refuse_savepoint(transaction: Any) -> None:
    if transaction.in_nested_transaction():
        raise ValueError(
            "bump the epoch in the outermost transaction, not inside a savepoint: "
            "a savepoint rolled back later would leave the cache ahead of the database"
        )
