"""The epoch table: names checked, columns found, statements built with SQLAlchemy Core.

Every statement is built from `table()`/`column()` constructs, so SQLAlchemy quotes the
names; the names themselves are checked against a plain identifier pattern first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql.dml import Insert

from .._core.epoch_provider import new_epoch
from .._protocol.key_layout import UserId, user_id_text
from .._transport.sql_errors import UnknownUser
from ..errors import ConfigurationError

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
EPOCH_LENGTH = len(new_epoch())
# Epoch column width in the managed table: room for epochs longer than today's.
EPOCH_COLUMN_LENGTH = 64
USER_ID_LENGTH = 256  # keys.user_id_text accepts up to this many characters
UPSERT_DIALECTS = ("postgresql", "sqlite", "mysql", "mariadb")


def identifier(kind: str, name: str) -> str:
    if not isinstance(name, str) or IDENTIFIER.fullmatch(name) is None:
        raise ConfigurationError(
            f"{kind} must be a plain SQL identifier (letters, digits, underscore; at most "
            f"63 characters, not starting with a digit), not {name!r}"
        )
    return name


@dataclass(frozen=True)
class TableSpec:
    """Where the epochs live, as the user named it."""

    name: str
    user_column: str
    epoch_column: str
    schema: str | None
    managed: bool

    def __post_init__(self) -> None:
        identifier("table", self.name)
        identifier("user_column", self.user_column)
        identifier("epoch_column", self.epoch_column)
        if self.schema is not None:
            identifier("schema", self.schema)
        if self.user_column == self.epoch_column:
            raise ConfigurationError("user_column and epoch_column must be different columns")

    @property
    def qualified(self) -> str:
        return self.name if self.schema is None else f"{self.schema}.{self.name}"

    def definition(self) -> sa.Table:
        """The managed table, for CREATE TABLE."""
        return sa.Table(
            self.name,
            sa.MetaData(),
            sa.Column(self.user_column, sa.String(USER_ID_LENGTH), primary_key=True),
            sa.Column(self.epoch_column, sa.String(EPOCH_COLUMN_LENGTH), nullable=False),
            schema=self.schema,
        )

    def create_sql(self, dialect: Dialect) -> str:
        return str(CreateTable(self.definition()).compile(dialect=dialect)).strip()

    def inspect(self, connection: Connection) -> EpochTable:
        """Check the table against the database and learn the type of its user ids."""
        inspector = sa.inspect(connection)
        dialect = connection.dialect.name
        if self.managed and dialect not in UPSERT_DIALECTS:
            raise ConfigurationError(
                f"a managed epoch table needs PostgreSQL, MySQL/MariaDB or SQLite, not {dialect}; "
                "point SQLEpochs at a column of your users table instead"
            )
        if not inspector.has_table(self.name, schema=self.schema):
            hint = (
                "create it with create_table() or the CREATE TABLE in docs/sql-epochs.md"
                if self.managed
                else "pass table= the name of your users table"
            )
            raise ConfigurationError(f"SQLEpochs: table {self.qualified} not found; {hint}")
        columns = inspector.get_columns(self.name, schema=self.schema)
        user = _find(columns, self.user_column, self.qualified)
        epoch = _find(columns, self.epoch_column, self.qualified)
        epoch_type = epoch["type"]
        length = getattr(epoch_type, "length", None)
        if not isinstance(epoch_type, sa.String) or (length is not None and length < EPOCH_LENGTH):
            raise ConfigurationError(
                f"SQLEpochs: column {self.qualified}.{epoch['name']} must be a string column of "
                f"at least {EPOCH_LENGTH} characters, e.g. VARCHAR({EPOCH_COLUMN_LENGTH}), "
                f"not {epoch_type}"
            )
        integer_ids = not self.managed and _python_type(user["type"]) is int
        return EpochTable(self, user["name"], epoch["name"], integer_ids, dialect)


def _find(columns: list[Any], name: str, table: str) -> Any:
    for column in columns:
        if column["name"] == name:
            return column
    # Unquoted names are case-insensitive in MySQL and SQLite (and folded in PostgreSQL).
    folded = [column for column in columns if column["name"].lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    raise ConfigurationError(f"SQLEpochs: table {table} has no column {name!r}")


def _python_type(column_type: Any) -> type | None:
    try:
        return column_type.python_type  # type: ignore[no-any-return]
    except NotImplementedError:
        return None


class EpochTable:
    """The statements SQLEpochs runs, on a table checked by TableSpec.inspect."""

    def __init__(
        self, spec: TableSpec, user_column: str, epoch_column: str, integer_ids: bool, dialect: str
    ) -> None:
        self.spec = spec
        self.integer_ids = integer_ids
        self.dialect = dialect
        user_type: sa.types.TypeEngine[Any] = sa.Integer() if integer_ids else sa.String()
        self.table = sa.table(
            spec.name,
            sa.column(user_column, user_type),
            sa.column(epoch_column, sa.String()),
            schema=spec.schema,
        )
        self.user = self.table.c[user_column]
        self.epoch = self.table.c[epoch_column]

    def user_value(self, user_id: UserId) -> str | int:
        """The user id as the user column holds it; TypeError if it cannot hold it."""
        text = user_id_text(user_id)
        if self.spec.managed:
            return text
        where = f"{self.spec.qualified}.{self.user.name}"
        if self.integer_ids and not isinstance(user_id, int):
            raise TypeError(f"{where} holds integers: user_id must be an int, not {user_id!r}")
        if not self.integer_ids and not isinstance(user_id, str):
            raise TypeError(f"{where} holds strings: user_id must be a str, not {user_id!r}")
        return user_id

    # -- the statements, each run on a connection in a transaction -------------------

    def read(self, connection: Connection, user_id: UserId, lock: bool = False) -> str | None:
        """The user's epoch; None if the user has none (no row, NULL or empty)."""
        query = sa.select(self.epoch).where(self.user == self.user_value(user_id))
        if lock:
            # Waits for a transaction that is bumping this user to end (PostgreSQL, MySQL).
            query = query.with_for_update(read=True)
        value = connection.execute(query).scalar()
        return value or None

    def ensure(self, connection: Connection, user_id: UserId, lock: bool = False) -> str:
        """The user's epoch, created if they have none; UnknownUser if they have no row.

        The write comes first, so that SQLite never has to upgrade a read lock, and the
        read after it is a locking read, so that MySQL does not answer from its snapshot.
        """
        value = self.user_value(user_id)
        candidate = new_epoch()
        if self.spec.managed:
            insert = self._insert({self.user.name: value, self.epoch.name: candidate})
            connection.execute(_do_nothing_on_conflict(insert, self))
        else:
            empty = sa.or_(self.epoch.is_(None), self.epoch == "")
            update = sa.update(self.table).where(self.user == value, empty)
            connection.execute(update.values({self.epoch.name: candidate}))
        query = sa.select(self.epoch).where(self.user == value)
        if lock or self.dialect in ("mysql", "mariadb"):
            query = query.with_for_update(read=True)
        row = connection.execute(query).first()
        if row is None:
            raise UnknownUser(f"no user {user_id!r} in {self.spec.qualified}", user_id)
        if not row[0]:
            raise UnknownUser(f"user {user_id!r} has no epoch and none could be stored", user_id)
        return str(row[0])

    def write(self, connection: Connection, user_id: UserId, epoch: str) -> None:
        """Store `epoch` as the user's epoch; UnknownUser if they have no row."""
        value = self.user_value(user_id)
        if self.spec.managed:
            insert = self._insert({self.user.name: value, self.epoch.name: epoch})
            connection.execute(_replace_on_conflict(insert, self))
            return
        update = sa.update(self.table).where(self.user == value)
        result = connection.execute(update.values({self.epoch.name: epoch}))
        if result.rowcount == 0:
            raise UnknownUser(f"no user {user_id!r} in {self.spec.qualified}", user_id)

    def write_if(self, connection: Connection, user_id: UserId, expected: str, epoch: str) -> bool:
        """Store `epoch` only if the user's epoch is still `expected`; whether it was."""
        update = sa.update(self.table).where(self.user == self.user_value(user_id))
        update = update.where(self.epoch == expected).values({self.epoch.name: epoch})
        return bool(connection.execute(update).rowcount == 1)

    def _insert(self, values: dict[str, Any]) -> Insert:
        module: Any
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql as module
        elif self.dialect == "sqlite":
            from sqlalchemy.dialects import sqlite as module
        else:
            from sqlalchemy.dialects import mysql as module
        return module.insert(self.table).values(values)  # type: ignore[no-any-return]


def _do_nothing_on_conflict(insert: Any, table: EpochTable) -> Any:
    if table.dialect in ("mysql", "mariadb"):
        return insert.on_duplicate_key_update({table.user.name: insert.inserted[table.user.name]})
    return insert.on_conflict_do_nothing(index_elements=[table.user])


def _replace_on_conflict(insert: Any, table: EpochTable) -> Any:
    if table.dialect in ("mysql", "mariadb"):
        return insert.on_duplicate_key_update({table.epoch.name: insert.inserted[table.epoch.name]})
    return insert.on_conflict_do_update(
        index_elements=[table.user], set_={table.epoch.name: insert.excluded[table.epoch.name]}
    )
