"""The Redis commands that read and write session records and the user's index (the
times they follow are in timing.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import SessionTooLarge
from .cookies import CookieRef
from .key_layout import KeySpace, session_handle
from .lua_scripts import CREATE, ENSURE_EPOCH, LOGIN, READ, ROTATE_OUT, WRITE
from .records import FieldCodec, Record, fields_size
from .timing import Timing, ms
from .wire import Command

# Where a user's epoch lives, as a write's guard sees it (see lua_scripts.WRITE).
EpochGuard = Literal["redis", "cache", "none"]
LoginMode = Literal["ensure", "given", "expect"]


@dataclass(frozen=True, slots=True)
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

    def read(self, tag: str, handle: str, epoch_key: str | None) -> Command:
        """The read script for the record `handle` (see key_layout.session_handle)."""
        record = self.keys.record_key(tag, handle)
        if epoch_key is None:
            return ("EVAL", READ, 1, record)
        return ("EVAL", READ, 2, record, epoch_key)

    def create(self, ref: CookieRef, record: Record) -> Command:
        """A new anonymous record; an id is never reused."""
        pairs = self._checked(self.codec.fields(record))
        expire, when = self.timing.record_expiry(record, record.created)
        return ("EVAL", CREATE, 1, self.keys.session_key(ref.tag, ref.session_id), expire, when,
                *pairs)  # fmt: skip

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
    ) -> Command:
        """Apply `pairs` (fields to set) and `deleted` (fields to remove) to the record as
        it is stored, refreshed at `now`, if `guard` holds (see lua_scripts.WRITE); with
        `keep_empty`, an anonymous record left empty is stored, not deleted."""
        keys = [self.keys.session_key(ref.tag, ref.session_id)]
        if guard.mode != "none":
            keys.append(self.keys.epoch_key(ref.tag))
        score = ""
        if self.timing.sliding and record.user_id is not None:
            # The expiry moves with every write: re-score the user's index with it.
            keys.append(self.keys.index_key(ref.tag))
            score = str(self.timing.index_score(record, now))
        expire, when = self.timing.record_expiry(record, now)
        return (
            "EVAL",
            WRITE,
            len(keys),
            *keys,
            guard.mode,
            guard.carried,
            guard.wanted,
            guard.stamp,
            self.max_bytes,
            expire,
            when,
            score,
            session_handle(ref.session_id),
            "1" if keep_empty else "0",
            len(pairs) // 2,
            *pairs,
            *deleted,
        )

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
        ttl = self.timing.record_ttl(record, now)
        keys = [
            self.keys.session_key(ref.tag, ref.session_id),
            self.keys.epoch_key(ref.tag),
            self.keys.index_key(ref.tag),
        ]
        old_handle = ""
        if rotating is not None:
            keys.append(self.keys.session_key(rotating.tag, rotating.session_id))
            old_handle = session_handle(rotating.session_id)
        return (
            "EVAL",
            LOGIN,
            len(keys),
            *keys,
            mode,
            epoch,
            self.timing.epoch_ttl_ms,
            ms(ttl),
            session_handle(ref.session_id),
            self.timing.index_score(record, now),
            ms(now),
            self.timing.epoch_ttl_ms,
            max_sessions,
            self.keys.record_key_base(ref.tag),
            old_handle,
            *pairs,
        )

    def rotate_out(self, ref: CookieRef, carried: str | None) -> Command:
        """Delete a session under an older signing key's tag if it still exists and, with
        `carried`, its user's epoch under that tag is still `carried`
        (lua_scripts.ROTATE_OUT)."""
        keys = [self.keys.session_key(ref.tag, ref.session_id), self.keys.index_key(ref.tag)]
        if carried is not None:
            keys.append(self.keys.epoch_key(ref.tag))
        return ("EVAL", ROTATE_OUT, len(keys), *keys, carried or "", session_handle(ref.session_id))

    def ensure_epoch(self, tag: str, candidate: str) -> Command:
        """The user's epoch under `tag`, created as `candidate` if there is none."""
        key = self.keys.epoch_key(tag)
        return ("EVAL", ENSURE_EPOCH, 1, key, candidate, self.timing.epoch_ttl_ms)

    def forget(self, ref: CookieRef, listed: bool) -> list[Command]:
        """Delete a record, and its entry in the user's index if it may have one."""
        commands: list[Command] = [("DEL", self.keys.session_key(ref.tag, ref.session_id))]
        if listed:
            commands.append(("ZREM", self.keys.index_key(ref.tag), session_handle(ref.session_id)))
        return commands

    def _checked(self, pairs: list[str]) -> list[str]:
        size = fields_size(pairs)
        if size > self.max_bytes:
            raise SessionTooLarge("the session would take", size, self.max_bytes)
        return pairs
