"""The Redis commands that read and write session records and the user's index (the
times they follow are in timing.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SessionTooLarge
from .cookies import CookieRef
from .key_layout import KeySpace
from .lua_scripts import (
    CreateCall,
    EnsureEpochCall,
    EpochGuard,
    LoginCall,
    LoginMode,
    ReadCall,
    ReadReply,
    RotateOutCall,
    WriteCall,
)
from .records import FieldCodec, Record, fields_size
from .timing import Timing, ms
from .wire import Command


@dataclass(slots=True)  # not frozen: made for every write, and frozen costs more
class Guard:
    """What a write checks before it applies anything (see lua_scripts.WRITE)."""

    mode: EpochGuard
    carried: str  # the record's epoch as loaded; '' for an anonymous session
    wanted: str  # the epoch the user must have now
    stamp: str = ""  # a new epoch for the record


class Writes:
    """Builds the Redis commands that read, create, write, log in and forget a session record,
    with the keys, expiry and size limit they need."""

    def __init__(self, keys: KeySpace, timing: Timing, max_bytes: int, codec: FieldCodec) -> None:
        self.keys = keys
        self.timing = timing
        self.max_bytes = max_bytes
        self.codec = codec

    def read_with_epoch(self, tag: str, handle: str, epoch_key: str | None) -> Command:
        """The read of the record `handle` (see key_layout.session_handle) and, given
        `epoch_key`, of its user's epoch, in one command: atomically (lua_scripts.READ)."""
        return ReadCall(record=self.keys.record_key(tag, handle), epoch_key=epoch_key).command()

    def read_pipelined(self, tag: str, handle: str, epoch_key: str | None) -> tuple[Command, ...]:
        """The same read as plain commands, in one pipeline: HGETALL of the record, then
        (given `epoch_key`) GET of the epoch. Not atomic: see pipelined_read."""
        record = ("HGETALL", self.keys.record_key(tag, handle))
        return (record,) if epoch_key is None else (record, ("GET", epoch_key))

    def create(self, ref: CookieRef, record: Record) -> Command:
        """A new anonymous record; an id is never reused."""
        pairs = self._checked(self.codec.fields(record))
        expire, when = self.timing.record_expiry(record, record.created)
        record_key = self._record_key(ref)
        return CreateCall(record=record_key, expire=expire, expire_at=when, fields=pairs).command()

    def write(
        self,
        ref: CookieRef,
        record: Record,
        guard: Guard,
        pairs: Sequence[str],
        deleted: Sequence[str],
        now: float,
        *,
        keep_empty: bool = False,
        grows: bool = False,
    ) -> Command:
        """Apply `pairs` (fields to set) and `deleted` (fields to remove) to the record as
        it is stored, refreshed at `now`, if `guard` holds (see lua_scripts.WRITE); with
        `keep_empty`, an anonymous record left empty is stored, not deleted; `grows`: the
        changes are expected to make the record larger (records.grows)."""
        index, score = None, ""
        if self.timing.sliding and record.user_id is not None:
            # The expiry moves with every write: re-score the user's index with it.
            index = self.keys.index_key(ref.tag)
            score = str(self.timing.index_score(record, now))
        expire, when = self.timing.record_expiry(record, now)
        return WriteCall(
            record=self._record_key(ref),
            epoch_key=None if guard.mode == "none" else self.keys.epoch_key(ref.tag),
            index=index,
            mode=guard.mode,
            carried=guard.carried,
            wanted=guard.wanted,
            stamp=guard.stamp,
            max_bytes=self.max_bytes,
            expire=expire,
            expire_at=when,
            score=score,
            handle=ref.handle,
            keep_empty=keep_empty,
            grows=grows,
            set_pairs=pairs,
            deleted=deleted,
        ).command()

    def login(
        self,
        ref: CookieRef,
        record: Record,
        mode: LoginMode,
        epoch: str,
        now: float,
        *,
        max_sessions: int = 0,
        rotating: CookieRef | None = None,
    ) -> Command:
        """The login script (lua_scripts.LOGIN); `rotating`: the session it replaces, under the
        same tag, which must still exist and is deleted by the script."""
        pairs = self.codec.fields(record)
        if fields_size(pairs) + 1 + len(epoch) > self.max_bytes:
            raise SessionTooLarge("the session would take", fields_size(pairs), self.max_bytes)
        return LoginCall(
            record=self._record_key(ref),
            epoch_key=self.keys.epoch_key(ref.tag),
            index=self.keys.index_key(ref.tag),
            old_record=None if rotating is None else self._record_key(rotating),
            mode=mode,
            epoch=epoch,
            epoch_ttl_ms=self.timing.epoch_ttl_ms,
            record_ttl_ms=ms(self.timing.record_ttl(record, now)),
            handle=ref.handle,
            score=self.timing.index_score(record, now),
            now_ms=ms(now),
            max_sessions=max_sessions,
            record_key_base=self.keys.record_key_base(ref.tag),
            old_handle="" if rotating is None else rotating.handle,
            fields=pairs,
        ).command()

    def rotate_out(self, ref: CookieRef, carried: str | None) -> Command:
        """Delete a session under an older signing key's tag if it still exists and, with
        `carried`, its user's epoch under that tag is still `carried`
        (lua_scripts.ROTATE_OUT)."""
        return RotateOutCall(
            record=self._record_key(ref),
            index=self.keys.index_key(ref.tag),
            epoch_key=None if carried is None else self.keys.epoch_key(ref.tag),
            carried=carried or "",
            handle=ref.handle,
        ).command()

    def ensure_epoch(self, tag: str, candidate: str) -> Command:
        """The user's epoch under `tag`, created as `candidate` if there is none."""
        return EnsureEpochCall(
            epoch_key=self.keys.epoch_key(tag),
            candidate=candidate,
            epoch_ttl_ms=self.timing.epoch_ttl_ms,
        ).command()

    def forget(self, ref: CookieRef, listed: bool) -> list[Command]:
        """Delete a record, and its entry in the user's index if it may have one."""
        commands: list[Command] = [("DEL", self._record_key(ref))]
        if listed:
            commands.append(("ZREM", self.keys.index_key(ref.tag), ref.handle))
        return commands

    def _record_key(self, ref: CookieRef) -> str:
        return self.keys.record_key(ref.tag, ref.handle)

    def _checked(self, pairs: list[str]) -> list[str]:
        size = fields_size(pairs)
        if size > self.max_bytes:
            raise SessionTooLarge("the session would take", size, self.max_bytes)
        return pairs


def pipelined_read(replies: Sequence[Any]) -> ReadReply | None:
    """Writes.read_pipelined's replies as READ's reply; None when one was an error (a key
    of the wrong type), which only READ tells apart.

    The two commands run one after the other, not atomically, and the user's epoch may
    change between them. A logged-in record read at t1, stamped s, and the epoch s read at
    t2 > t1 are still as good as READ's answer: every epoch is a fresh random value that
    never comes back (new_epoch(), for the SQL column too), and a record is stamped only
    with an epoch its user has had (LOGIN reads or checks the epoch key atomically, or
    stamps what the provider gave; WRITE re-stamps only with the epoch at the key), so the
    user had s before t1 and still has it at t2: at t1 too. Any other pair proves nothing:
    between the two commands this very session may have logged the others out (a new epoch,
    this record re-stamped with it), so only READ's answer may reject (see Core.open)."""
    fields, epoch = replies if len(replies) == 2 else (replies[0], None)
    if isinstance(fields, Exception) or isinstance(epoch, Exception):
        return None
    return ReadReply(fields, epoch)
