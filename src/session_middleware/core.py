"""The decisions, with no I/O.

Opening and committing a session are generators: they yield what they need done
(`RedisIO`: commands for one round trip; `ProviderIO`: a call on the epoch provider) and
are sent back the result. The async and the sync driver each run them with a few lines
of their own, so every decision below is made once, for both.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .commands import Command, text
from .cookies import CookieCodec, CookieRef
from .epochs.base import EpochProvider, new_epoch
from .keys import KeySpace, new_anonymous_tag, new_session_id, session_handle
from .records import CorruptRecord, Record, decode, encode, encode_parts
from .scripts import LOGIN, WRITE_BACK
from .session import Session

logger = logging.getLogger("session_middleware")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RedisIO:
    """Run these commands on the session Redis in one round trip; send back the replies."""

    commands: tuple[Command, ...]


@dataclass(frozen=True, slots=True)
class ProviderIO:
    """Call `method` (or its `a`-prefixed twin) on the epoch provider; send back its result."""

    method: str
    args: tuple[Any, ...]


Step = Generator[RedisIO | ProviderIO, Any, T]


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


ClientInfo = Callable[[], tuple[str | None, str | None]]
MAX_USER_AGENT = 256


@dataclass(slots=True)
class Opened:
    """A request's session and what the core knows about where it came from."""

    session: Session
    ref: CookieRef | None = None
    record: Record | None = None
    raw: str | None = None
    rejected: str | None = None
    cookie_is_stale: bool = False
    cleanup: list[Command] = field(default_factory=list)
    client_info: ClientInfo | None = None


@dataclass(frozen=True, slots=True)
class Committed:
    set_cookie: str | None


class Core:
    def __init__(
        self,
        keys: KeySpace,
        codec: CookieCodec,
        provider: EpochProvider,
        timing: Timing,
        track_devices: bool = True,
    ) -> None:
        self.keys = keys
        self.codec = codec
        self.provider = provider
        self.timing = timing
        self.track_devices = track_devices

    # -- reading --------------------------------------------------------------------

    def open(
        self, cookie_header: str | None, now: float, client_info: ClientInfo | None = None
    ) -> Step[Opened]:
        ref = self.codec.find(cookie_header)
        if ref is None:
            return Opened(Session(), client_info=client_info)
        session_key = self.keys.session_key(ref.tag, ref.session_id)
        epoch_key = self.provider.cached_key(ref.tag)
        if epoch_key is None:
            (raw_reply,) = yield RedisIO((("GET", session_key),))
            cached = None
        else:
            ((raw_reply, cached),) = yield RedisIO((("MGET", session_key, epoch_key),))
        raw = text(raw_reply)
        stale = Opened(Session(), ref=ref, cookie_is_stale=True, client_info=client_info)
        if raw is None:
            return stale
        try:
            record = decode(raw)
        except CorruptRecord as error:
            logger.warning(
                "dropped a session record that is not ours (%s): key %s",
                error,
                _fingerprint(session_key),
            )
            stale.cleanup = self._forget(ref, listed=True)
            return stale
        if self.expired(record, now):
            stale.cleanup = self._forget(ref, listed=record.user_id is not None)
            return stale
        if record.user_id is not None:
            epoch = yield ProviderIO("resolve", (record.user_id, ref.tag, text(cached)))
            if not same_epoch(epoch, record.epoch):
                stale.rejected = "epoch"
                stale.cleanup = self._forget(ref, listed=True)
                return stale
        session = Session(record.data, record.user_id)
        session.handle = session_handle(ref.session_id)
        return Opened(session, ref=ref, record=record, raw=raw, client_info=client_info)

    def expired(self, record: Record, now: float) -> bool:
        if now >= record.expires:
            return True
        idle = self.timing.idle_timeout
        return idle is not None and now - record.refreshed >= idle

    # -- writing --------------------------------------------------------------------

    def commit(self, opened: Opened, now: float) -> Step[Committed]:
        """Carry out what the handler did to the session: at most one round trip."""
        session = opened.session
        commands = list(opened.cleanup)
        set_cookie: str | None = None
        record, ref = opened.record, opened.ref

        if session.pending_login is not None:
            if record is not None and ref is not None:
                commands += self._forget(ref, listed=record.user_id is not None)
            if session.logout_others_requested:
                commands += yield from self._bump(session.pending_login)
            login_commands, set_cookie = yield from self._login(opened, now)
            commands += login_commands
        elif session.ended or record is None or ref is None:
            if record is not None and ref is not None:
                commands += self._forget(ref, listed=record.user_id is not None)
            if len(session):
                ref = CookieRef(new_anonymous_tag(), new_session_id())
                record = self._new_record(session, now, user_id=None)
                commands.append(self._write(ref, record, now, create=True))
                set_cookie = self.codec.set_header(ref, self.timing.lifetime)
            elif record is not None or opened.cookie_is_stale:
                set_cookie = self.codec.clear_header()
        elif session.logout_others_requested:
            assert session.user_id is not None
            commands += yield from self._bump(session.user_id, record)
            commands.append(self._write(ref, self._touched(record, session, now), now))
        elif self._changed(opened):
            if session.user_id is None and not len(session):
                commands += self._forget(ref, listed=False)
                set_cookie = self.codec.clear_header()
            else:
                commands.append(self._write(ref, self._touched(record, session, now), now))
        elif now - record.refreshed >= self.timing.refresh_interval:
            commands.append(self._write(ref, self._touched(record, session, now), now))

        if commands:
            yield RedisIO(tuple(commands))
        return Committed(set_cookie)

    def _login(self, opened: Opened, now: float) -> Step[tuple[list[Command], str]]:
        session = opened.session
        user_id = session.pending_login
        assert user_id is not None
        known_epoch = yield ProviderIO("login_epoch", (user_id,))
        mode = self.provider.login_mode()
        epoch = known_epoch if known_epoch is not None else new_epoch()
        ref = CookieRef(self.keys.user_tag(user_id), new_session_id())
        record = self._new_record(session, now, user_id=user_id)
        if self.track_devices and opened.client_info is not None:
            user_agent, ip = opened.client_info()
            record.extra = {"ua": (user_agent or "")[:MAX_USER_AGENT] or None, "ip": ip}
        head, tail = encode_parts(record)
        ttl = self.timing.record_ttl(record, now)
        handle = session_handle(ref.session_id)
        command = (
            "EVAL",
            LOGIN,
            3,
            self.keys.session_key(ref.tag, ref.session_id),
            self.keys.epoch_key(ref.tag),
            self.keys.index_key(ref.tag),
            mode,
            epoch,
            self.timing.lifetime * 1000 + 60_000,
            head,
            tail,
            ms(ttl),
            handle,
            ms(now + ttl),
            ms(now),
            self.timing.lifetime * 1000 + 60_000,
        )
        return [command], self.codec.set_header(ref, self.timing.lifetime)

    def _bump(self, user_id: Any, record: Record | None = None) -> Step[list[Command]]:
        """Commands that give the user a new epoch (run now if they cannot ride along)."""
        epoch = new_epoch()
        commands = self.provider.bump_commands(user_id, epoch)
        if commands is None:
            epoch = yield ProviderIO("bump", (user_id,))
            commands = []
        if record is not None:
            record.epoch = epoch
        return commands

    def _changed(self, opened: Opened) -> bool:
        session = opened.session
        if session.modified:
            return True
        if not session.accessed or opened.raw is None:
            return False
        # A nested value may have been changed in place: compare with what was loaded.
        try:
            return decode(opened.raw).data != session.data
        except CorruptRecord:
            return True

    def _new_record(self, session: Session, now: float, user_id: Any) -> Record:
        return Record(
            data=session.data,
            created=now,
            expires=now + self.timing.lifetime,
            refreshed=now,
            user_id=user_id,
        )

    def _touched(self, record: Record, session: Session, now: float) -> Record:
        record.data = session.data
        record.refreshed = now
        return record

    def _write(self, ref: CookieRef, record: Record, now: float, create: bool = False) -> Command:
        """Write the record: NX for a new id, XX otherwise, so a write-back never brings
        back a record that a logout or revocation deleted meanwhile."""
        key = self.keys.session_key(ref.tag, ref.session_id)
        if self.timing.idle_timeout is None:
            return (
                "SET",
                key,
                encode(record),
                "PXAT",
                ms(record.expires),
                "NX" if create else "XX",
            )
        ttl = self.timing.record_ttl(record, now)
        if record.user_id is None or create:
            return ("SET", key, encode(record), "PX", ms(ttl), "NX" if create else "XX")
        # The expiry moves: re-score the user's index in the same command.
        index = self.keys.index_key(ref.tag)
        handle = session_handle(ref.session_id)
        return ("EVAL", WRITE_BACK, 2, key, index, encode(record), ms(ttl), handle, ms(now + ttl))

    def _forget(self, ref: CookieRef, listed: bool) -> list[Command]:
        """Delete a record, and its entry in the user's index if it may have one."""
        commands: list[Command] = [("DEL", self.keys.session_key(ref.tag, ref.session_id))]
        if listed:
            commands.append(("ZREM", self.keys.index_key(ref.tag), session_handle(ref.session_id)))
        return commands


def ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


def same_epoch(current: str | None, stamped: str | None) -> bool:
    if current is None or stamped is None:
        return False
    return hmac.compare_digest(current.encode(), stamped.encode())


def _fingerprint(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
