"""Run a callback when the app's own transaction commits, and forget it if it does not.

An ORM Session has an event after its COMMIT (`after_commit`). A Core Connection has
none: its `commit` event runs just before the COMMIT is sent, so for a Connection the
callback runs then, and if it fails the transaction is rolled back; docs/sql-epochs.md
explains why that ordering is still safe.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, SessionTransaction

Callback = Callable[[], object]

_pending: weakref.WeakKeyDictionary[Connection | Session, list[Callback]] = (
    weakref.WeakKeyDictionary()
)


def on_commit(target: Connection | Session, callback: Callback) -> None:
    """Call `callback` when `target`'s current transaction commits; drop it on rollback."""
    if _autocommits(target):
        callback()
        return
    callbacks = _pending.get(target)
    if callbacks is None:
        callbacks = _pending[target] = []
        if isinstance(target, Session):
            event.listen(target, "after_commit", _run)
            event.listen(target, "after_transaction_end", _forget_at_end)
        else:
            event.listen(target, "commit", _run_before_commit)
            event.listen(target, "rollback", _forget)
    callbacks.append(callback)


def _autocommits(target: Connection | Session) -> bool:
    if isinstance(target, Session):
        return False
    return target.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


def _run(target: Connection | Session) -> None:
    for callback in _pending.pop(target, []):
        callback()


def _run_before_commit(connection: Connection) -> None:
    try:
        _run(connection)
    except BaseException:
        # SQLAlchemy gives up its transaction when a commit event raises, but the
        # database's is still open: roll it back, so that nothing is committed and the
        # connection goes back to the pool clean instead of holding the row locks.
        with contextlib.suppress(Exception):
            connection.connection.dbapi_connection.rollback()  # type: ignore[union-attr]
        raise


def _forget(target: Connection | Session) -> None:
    _pending.pop(target, None)


def _forget_at_end(session: Session, transaction: SessionTransaction) -> None:
    # after_commit has run by now if the transaction committed; anything left was
    # rolled back or closed without a commit. Savepoints ending do not count.
    if transaction.parent is None:
        _forget(session)


def sync_target(tx: Any) -> Connection | Session:
    """The sync Connection or Session whose events mark the end of tx's transaction."""
    for kind in (Connection, Session):
        if isinstance(tx, kind):
            return tx
    sync = getattr(tx, "sync_session", None) or getattr(tx, "sync_connection", None)
    if isinstance(sync, (Connection, Session)):
        return sync
    raise TypeError(
        f"pass a SQLAlchemy Connection or Session (or their async twins), not {type(tx).__name__}"
    )
