"""The Redis commands that write session records and the user's index."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .commands import Command
from .cookies import CookieRef
from .keys import KeySpace, session_handle
from .records import Cipher, Record, SessionTooLarge, encode, encode_parts
from .scripts import EPOCH_TTL_MARGIN_MS, LOGIN, WRITE_BACK


@dataclass(frozen=True, slots=True)
class Timing:
    """Lifetimes, in seconds."""

    lifetime: int
    idle_timeout: int | None
    refresh_interval: float

    def record_ttl(self, record: Record, now: float) -> float:
        """Seconds until the record expires, as of a write at `now`."""
        left = record.expires - now
        return left if self.idle_timeout is None else min(left, self.idle_timeout)

    def expired(self, record: Record, now: float) -> bool:
        if now >= record.expires:
            return True
        return self.idle_timeout is not None and now - record.refreshed >= self.idle_timeout

    def refresh_due(self, record: Record, now: float) -> bool:
        """Whether a read writes the record back to record activity."""
        return now - record.refreshed >= self.refresh_interval

    @property
    def epoch_ttl_ms(self) -> int:
        """Epochs (and indexes) outlive every session stamped since they were last set."""
        return self.lifetime * 1000 + EPOCH_TTL_MARGIN_MS


def ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


class Writes:
    def __init__(
        self, keys: KeySpace, timing: Timing, max_bytes: int, cipher: Cipher | None = None
    ) -> None:
        self.keys = keys
        self.timing = timing
        self.max_bytes = max_bytes
        self.cipher = cipher

    def create(self, ref: CookieRef, record: Record) -> Command:
        """A new anonymous record; NX: an id is never reused."""
        value = self._checked(encode(record, self.cipher))
        expiry = self._expiry(record, record.created)
        return ("SET", self.keys.session_key(ref.tag, ref.session_id), value, *expiry, "NX")

    def write_back(self, ref: CookieRef, record: Record, loaded: str, now: float) -> Command:
        """Replace the record if it is still exactly `loaded` (see scripts.WRITE_BACK)."""
        key = self.keys.session_key(ref.tag, ref.session_id)
        value = self._checked(encode(record, self.cipher))
        fingerprint = hashlib.sha1(loaded.encode(), usedforsecurity=False).hexdigest()
        expiry = self._expiry(record, now)
        if self.timing.idle_timeout is None or record.user_id is None:
            return ("EVAL", WRITE_BACK, 1, key, fingerprint, value, *expiry)
        # The expiry moves with every write: re-score the user's index in the same command.
        index = self.keys.index_key(ref.tag)
        handle = session_handle(ref.session_id)
        score = ms(now + self.timing.record_ttl(record, now))
        return ("EVAL", WRITE_BACK, 2, key, index, fingerprint, value, *expiry, handle, score)

    def login(self, ref: CookieRef, record: Record, mode: str, epoch: str, now: float) -> Command:
        head, tail = encode_parts(record, self.cipher)
        self._checked(head + epoch + tail)
        ttl = self.timing.record_ttl(record, now)
        return (
            "EVAL",
            LOGIN,
            3,
            self.keys.session_key(ref.tag, ref.session_id),
            self.keys.epoch_key(ref.tag),
            self.keys.index_key(ref.tag),
            mode,
            epoch,
            self.timing.epoch_ttl_ms,
            head,
            tail,
            ms(ttl),
            session_handle(ref.session_id),
            ms(now + ttl),
            ms(now),
            self.timing.epoch_ttl_ms,
        )

    def forget(self, ref: CookieRef, listed: bool) -> list[Command]:
        """Delete a record, and its entry in the user's index if it may have one."""
        commands: list[Command] = [("DEL", self.keys.session_key(ref.tag, ref.session_id))]
        if listed:
            commands.append(("ZREM", self.keys.index_key(ref.tag), session_handle(ref.session_id)))
        return commands

    def _expiry(self, record: Record, now: float) -> tuple[str, int]:
        if self.timing.idle_timeout is None:
            return ("PXAT", ms(record.expires))
        return ("PX", ms(self.timing.record_ttl(record, now)))

    def _checked(self, value: str) -> str:
        size = len(value.encode())
        if size > self.max_bytes:
            raise SessionTooLarge("the session would take", size, self.max_bytes)
        return value
