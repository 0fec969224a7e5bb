"""The decisions, with no I/O.

Opening and committing a session are generators (see steps.py): they yield what they
need done and are sent back the result. The async and the sync driver each run them with
a few lines of their own, so every decision below is made once, for both.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import marshal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import WatchError

from .commands import Command, text
from .cookies import CookieCodec, CookieRef
from .epochs.base import EpochProvider, new_epoch
from .keys import KeySpace, new_anonymous_tag, new_session_id, session_handle
from .records import MARSHAL_VERSION, Cipher, CorruptRecord, Record, RecordReader, decode
from .session import Session
from .steps import ProviderIO, RedisIO, Step
from .writes import Timing, Writes

logger = logging.getLogger("session_middleware")

ClientInfo = Callable[[], tuple[str | None, str | None]]
MAX_USER_AGENT = 256
MAX_MERGES = 64


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
    loaded: bytes | None = None  # the data as loaded, marshalled (see _changed)


@dataclass(frozen=True, slots=True)
class Committed:
    set_cookie: str | None
    depends_on_session: bool


class Core:
    def __init__(
        self,
        keys: KeySpace,
        codec: CookieCodec,
        provider: EpochProvider,
        timing: Timing,
        *,
        track_devices: bool = True,
        max_bytes: int = 64 * 1024,
        cipher: Cipher | None = None,
    ) -> None:
        self.keys = keys
        self.codec = codec
        self.provider = provider
        self.timing = timing
        self.track_devices = track_devices
        self.max_bytes = max_bytes
        self.cipher = cipher
        self.writes = Writes(keys, timing, max_bytes, cipher)
        self.records = RecordReader(cipher)

    # -- reading --------------------------------------------------------------------

    def open(
        self, cookie_header: str | None, now: float, client_info: ClientInfo | None = None
    ) -> Step[Opened]:
        ref = self.codec.find(cookie_header)
        if ref is None:
            return Opened(self._session(), client_info=client_info)
        handle = session_handle(ref.session_id)
        session_key = self.keys.record_key(ref.tag, handle)
        epoch_key = self.provider.cached_key(ref.tag)
        if epoch_key is None:
            (raw_reply,) = yield RedisIO((("GET", session_key),))
            cached = None
        else:
            ((raw_reply, cached),) = yield RedisIO((("MGET", session_key, epoch_key),))
        raw = text(raw_reply)
        stale = Opened(self._session(), ref=ref, cookie_is_stale=True, client_info=client_info)
        if raw is None:
            return stale
        try:
            record, loaded = self.records.read(raw)
        except CorruptRecord as error:
            logger.warning(
                "dropped a session record that is not ours (%s): key %s",
                error,
                _fingerprint(session_key),
            )
            stale.cleanup = self.writes.forget(ref, listed=True)
            return stale
        if record.user_id is not None and ref.tag not in self.keys.user_tags(record.user_id):
            logger.warning(
                "dropped a session record under another user's tag: key %s",
                _fingerprint(session_key),
            )
            stale.cleanup = self.writes.forget(ref, listed=True)
            return stale
        if self.timing.expired(record, now):
            stale.cleanup = self.writes.forget(ref, listed=record.user_id is not None)
            return stale
        if record.user_id is not None:
            epoch = yield from self.current_epoch(record.user_id, ref.tag, cached)
            if not same_epoch(epoch, record.epoch):
                stale.rejected = "epoch"
                stale.cleanup = self.writes.forget(ref, listed=True)
                return stale
        session = self._session(record.data, record.user_id)
        session.handle = handle
        return Opened(
            session, ref=ref, record=record, raw=raw, client_info=client_info, loaded=loaded
        )

    def current_epoch(self, user_id: Any, tag: str, cached: Any) -> Step[str | None]:
        """The user's epoch, given what `provider.cached_key(tag)` held: a value there is
        the current epoch (the Protocol's promise); the provider is asked only on a miss."""
        epoch = text(cached)
        if epoch is None:
            epoch = yield ProviderIO("resolve", (user_id, tag, None))
        return epoch

    def _session(self, data: dict[str, Any] | None = None, user_id: Any = None) -> Session:
        return Session(data, user_id, max_value_bytes=self.max_bytes)

    # -- writing --------------------------------------------------------------------

    def settled(self, opened: Opened, now: float) -> Committed | None:
        """What commit would give when it has nothing to write (most reads), else None."""
        session = opened.session
        if (
            opened.cleanup
            or session.pending_login is not None
            or session.ended
            or session.logout_others_requested
        ):
            return None
        if opened.record is None:
            if opened.cookie_is_stale or session.modified or session.accessed:
                return None  # a session to create, or a cookie to clear
        elif self._changed(opened) or self.timing.refresh_due(opened.record, now):
            return None
        return Committed(None, session.observed or session.modified or opened.ref is not None)

    def commit(self, opened: Opened, now: float) -> Step[Committed]:
        """Carry out what the handler did: one round trip (and one more per conflicting
        concurrent write, which is merged)."""
        settled = self.settled(opened, now)
        if settled is not None:
            return settled
        session = opened.session
        depends = session.observed or session.modified or opened.ref is not None
        commands = list(opened.cleanup)
        set_cookie: str | None = None
        record, ref = opened.record, opened.ref
        write_back = False

        if session.pending_login is not None:
            if record is not None and ref is not None:
                commands += self.writes.forget(ref, listed=record.user_id is not None)
            if session.logout_others_requested:
                commands += yield from self._bump(session.pending_login)
            command, set_cookie = yield from self._login(opened, now)
            commands.append(command)
        elif session.ended or record is None or ref is None:
            if record is not None and ref is not None:
                commands += self.writes.forget(ref, listed=record.user_id is not None)
            if len(session):
                ref = CookieRef(new_anonymous_tag(), new_session_id())
                commands.append(self.writes.create(ref, self._new_record(session, now, None)))
                set_cookie = self.codec.set_header(ref, self.timing.lifetime)
            elif record is not None or opened.cookie_is_stale:
                set_cookie = self.codec.clear_header()
        elif session.logout_others_requested:
            assert session.user_id is not None
            commands += yield from self._bump(session.user_id, record)
            write_back = True
        elif self._changed(opened):
            if session.user_id is None and not len(session):
                commands += self.writes.forget(ref, listed=False)
                set_cookie = self.codec.clear_header()
            else:
                write_back = True
        elif self.timing.refresh_due(record, now):
            write_back = True

        if write_back:
            assert record is not None and ref is not None and opened.raw is not None
            record.data, record.refreshed = session.data, now
            commands.append(self.writes.write_back(ref, record, opened.raw, now))
        if commands:
            replies = yield RedisIO(tuple(commands))
            if write_back:
                yield from self._merge(opened, now, replies[-1])
        return Committed(set_cookie, depends)

    def _merge(self, opened: Opened, now: float, reply: Any) -> Step[None]:
        """Another request wrote this session since we loaded it: apply our changes to
        its version and try again. Distinct keys both survive; for the same key the
        last writer wins."""
        assert opened.record is not None and opened.ref is not None and opened.raw is not None
        if not isinstance(reply, (bytes, str)):
            return  # written (1), or gone (0): a deleted session is never brought back
        ours, loaded = opened.record, decode(opened.raw, self.cipher).data
        changed = {k: v for k, v in ours.data.items() if k not in loaded or loaded[k] != v}
        removed = loaded.keys() - ours.data.keys()
        for _ in range(MAX_MERGES):
            current = text(reply) if isinstance(reply, (bytes, str)) else None
            if current is None:
                return  # written (1), or gone (0): a deleted session is never brought back
            try:
                theirs = decode(current, self.cipher)
            except CorruptRecord:
                return
            if not changed and not removed and ours.epoch == theirs.epoch:
                return  # only a refresh, and the other request refreshed it already
            theirs.data.update(changed)
            for key in removed:
                theirs.data.pop(key, None)
            if opened.session.logout_others_requested:
                theirs.epoch = ours.epoch  # this request's new epoch
            theirs.refreshed = now
            command = self.writes.write_back(opened.ref, theirs, current, now)
            (reply,) = yield RedisIO((command,))
        logger.warning("gave up merging a session written concurrently %d times", MAX_MERGES)
        raise WatchError("the session kept changing under this request; its changes were not saved")

    def _login(self, opened: Opened, now: float) -> Step[tuple[Command, str]]:
        session = opened.session
        user_id = session.pending_login
        assert user_id is not None
        known_epoch = yield ProviderIO("login_epoch", (user_id,))
        epoch = known_epoch if known_epoch is not None else new_epoch()
        ref = CookieRef(self.keys.user_tag(user_id), new_session_id())
        record = self._new_record(session, now, user_id)
        if self.track_devices and opened.client_info is not None:
            user_agent, ip = opened.client_info()
            record.extra = {"ua": (user_agent or "")[:MAX_USER_AGENT] or None, "ip": ip}
        command = self.writes.login(ref, record, self.provider.login_mode(), epoch, now)
        return command, self.codec.set_header(ref, self.timing.lifetime)

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
        if not session.accessed or opened.loaded is None:
            return False
        # A nested value may have been changed in place: compare with what was loaded.
        try:
            return marshal.dumps(session.data, MARSHAL_VERSION) != opened.loaded
        except ValueError:
            return True  # a value JSON cannot hold either: the write raises TypeError

    def _new_record(self, session: Session, now: float, user_id: Any) -> Record:
        return Record(
            data=session.data,
            created=now,
            expires=now + self.timing.lifetime,
            refreshed=now,
            user_id=user_id,
        )


def same_epoch(current: str | None, stamped: str | None) -> bool:
    if current is None or stamped is None:
        return False
    return hmac.compare_digest(current.encode(), stamped.encode())


def _fingerprint(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
