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
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .commands import Command, text
from .cookies import CookieCodec, CookieRef
from .epochs.base import EpochProvider, new_epoch
from .keys import KeySpace, new_anonymous_tag, new_session_id
from .records import CorruptRecord, Record, decode, encode, encode_parts
from .scripts import LOGIN
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
    refresh_interval: int


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


@dataclass(frozen=True, slots=True)
class Committed:
    set_cookie: str | None


class Core:
    def __init__(
        self, keys: KeySpace, codec: CookieCodec, provider: EpochProvider, timing: Timing
    ) -> None:
        self.keys = keys
        self.codec = codec
        self.provider = provider
        self.timing = timing

    # -- reading --------------------------------------------------------------------

    def open(self, cookie_header: str | None, now: float) -> Step[Opened]:
        ref = self.codec.find(cookie_header)
        if ref is None:
            return Opened(Session())
        session_key = self.keys.session_key(ref.tag, ref.session_id)
        epoch_key = self.provider.cached_key(ref.tag)
        if epoch_key is None:
            (raw_reply,) = yield RedisIO((("GET", session_key),))
            cached = None
        else:
            ((raw_reply, cached),) = yield RedisIO((("MGET", session_key, epoch_key),))
        raw = text(raw_reply)
        if raw is None:
            return Opened(Session(), ref=ref, cookie_is_stale=True)
        stale = Opened(Session(), ref=ref, cookie_is_stale=True, cleanup=[("DEL", session_key)])
        try:
            record = decode(raw)
        except CorruptRecord as error:
            logger.warning(
                "dropped a session record that is not ours (%s): key %s",
                error,
                _fingerprint(session_key),
            )
            return stale
        if self._expired(record, now):
            return stale
        if record.user_id is not None:
            epoch = yield ProviderIO("resolve", (record.user_id, ref.tag, text(cached)))
            if not _same_epoch(epoch, record.epoch):
                stale.rejected = "epoch"
                return stale
        session = Session(record.data, record.user_id)
        return Opened(session, ref=ref, record=record, raw=raw)

    def _expired(self, record: Record, now: float) -> bool:
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
        live = opened.record is not None and opened.ref is not None

        if session.pending_login is not None:
            if live:
                commands.append(("DEL", self._key(opened)))
            if session.logout_others_requested:
                commands += yield from self._bump(session.pending_login)
            login_commands, set_cookie = yield from self._login(session, now)
            commands += login_commands
        elif session.ended or not live:
            if live:
                commands.append(("DEL", self._key(opened)))
            if len(session):
                ref = CookieRef(new_anonymous_tag(), new_session_id())
                record = Record(
                    data=session.data,
                    created=now,
                    expires=now + self.timing.lifetime,
                    refreshed=now,
                )
                commands.append(self._write(ref, record, now, create=True))
                set_cookie = self.codec.set_header(ref, self.timing.lifetime)
            elif live or opened.cookie_is_stale:
                set_cookie = self.codec.clear_header()
        else:
            assert opened.record is not None and opened.ref is not None
            record = opened.record
            if session.logout_others_requested:
                assert session.user_id is not None
                commands += yield from self._bump(session.user_id, record)
                commands.append(self._write(opened.ref, self._updated(record, session, now), now))
            elif self._changed(opened):
                if session.user_id is None and not len(session):
                    commands.append(("DEL", self._key(opened)))
                    set_cookie = self.codec.clear_header()
                else:
                    commands.append(
                        self._write(opened.ref, self._updated(record, session, now), now)
                    )
            elif self._refresh_due(record, now):
                commands.append(self._write(opened.ref, self._updated(record, session, now), now))

        if commands:
            yield RedisIO(tuple(commands))
        return Committed(set_cookie)

    def _login(self, session: Session, now: float) -> Step[tuple[list[Command], str]]:
        user_id = session.pending_login
        assert user_id is not None
        known_epoch = yield ProviderIO("login_epoch", (user_id,))
        mode = self.provider.login_mode()
        epoch = known_epoch if known_epoch is not None else new_epoch()
        ref = CookieRef(self.keys.user_tag(user_id), new_session_id())
        record = Record(
            data=session.data,
            created=now,
            expires=now + self.timing.lifetime,
            refreshed=now,
            user_id=user_id,
        )
        head, tail = encode_parts(record)
        session_key = self.keys.session_key(ref.tag, ref.session_id)
        epoch_key = self.provider.cached_key(ref.tag)
        keys: tuple[str, ...] = (session_key,) if epoch_key is None else (session_key, epoch_key)
        if epoch_key is None:
            mode = "given"
        ttl_ms = self.timing.lifetime * 1000
        epoch_ttl_ms = ttl_ms + 60_000
        if self.timing.idle_timeout is not None:
            ttl_ms = min(ttl_ms, self.timing.idle_timeout * 1000)
        command = ("EVAL", LOGIN, len(keys), *keys, mode, epoch, epoch_ttl_ms, head, tail, ttl_ms)
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

    def _refresh_due(self, record: Record, now: float) -> bool:
        return (
            self.timing.idle_timeout is not None
            and now - record.refreshed >= self.timing.refresh_interval
        )

    def _updated(self, record: Record, session: Session, now: float) -> Record:
        record.data = session.data
        record.refreshed = now
        return record

    def _write(self, ref: CookieRef, record: Record, now: float, create: bool = False) -> Command:
        """SET the record: NX for a new id, XX otherwise, so a write-back never brings back
        a record that a logout or revocation deleted meanwhile."""
        key = self.keys.session_key(ref.tag, ref.session_id)
        expiry: tuple[Any, ...]
        if self.timing.idle_timeout is None:
            expiry = ("PXAT", int(record.expires * 1000))
        else:
            left = min(record.expires - now, self.timing.idle_timeout)
            expiry = ("PX", max(int(left * 1000), 1))
        return ("SET", key, encode(record), *expiry, "NX" if create else "XX")

    def _key(self, opened: Opened) -> str:
        assert opened.ref is not None
        return self.keys.session_key(opened.ref.tag, opened.ref.session_id)


def _same_epoch(current: str | None, stamped: str | None) -> bool:
    if current is None or stamped is None:
        return False
    return hmac.compare_digest(current.encode(), stamped.encode())


def _fingerprint(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
