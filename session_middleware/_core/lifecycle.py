"""The decisions, with no I/O.

Opening and committing a session are generators (see steps.py): they yield what they
need done and are sent back the result. The async and the sync driver each run them with
a few lines of their own, so every decision below is made once, for both.

A write never resurrects and never adopts: it sends only what the request changed, and
one script applies it to the record as stored now, refusing if the record is gone or the
user's epoch is no longer the one the session was loaded with (lua_scripts.WRITE). Every
epoch change made from a request is a compare-and-set on that epoch.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._protocol.cookies import CookieCodec, CookieRef, CookieUpdate
from .._protocol.key_layout import (
    KeySpace,
    new_anonymous_tag,
    new_session_id,
    user_id_text,
)
from .._protocol.lua_scripts import (
    EMPTIED,
    EPOCH_MOVED,
    EPOCH_UNKNOWN,
    GONE,
    TOO_LARGE,
    WRITTEN,
    CreateCall,
    EpochGuard,
    LoginCall,
    ReadCall,
    ReadReply,
    WriteCall,
)
from .._protocol.record_commands import Guard, Writes, pipelined_read
from .._protocol.records import (
    Cipher,
    FieldCodec,
    Record,
    RecordReader,
    flat_fields,
    grows,
    new_record,
    refreshed_field,
)
from .._protocol.timing import Timing
from .._protocol.wire import Command, text
from ..errors import CorruptRecord, NotReplicated, SessionTooLarge, StoreUnavailable
from ..events import Reason, SessionEvent
from ..session import KEEP, Session
from .epoch_provider import EpochProvider, new_epoch
from .login_plan import LoginPlan, origin, plan_login
from .steps import Emit, RedisIO, Step

logger = logging.getLogger("session_middleware")

ClientInfo = Callable[[], tuple[str | None, str | None]]
MAX_USER_AGENT = 256
# Why a request's changes were dropped: its session was ended meanwhile, or its user's
# epoch moved.
Interrupted = Literal["gone", "epoch"]
WriteOutcome = Literal["written", "emptied", "gone", "epoch", "unreplicated"]
# Why a stored record is dead (see Core.liveness).
Dead = Literal["foreign", "expired", "epoch"]
# What a request's own epoch change may fail with: not on enough replicas (NotReplicated),
# or not answered at all (StoreUnavailable). The request's session then ends.
NOT_DURABLE: tuple[type[Exception], ...] = (NotReplicated, StoreUnavailable)
READS_REMEMBERED = 4096  # sessions whose read commands a core keeps (as cookies.VERIFIED_ENTRIES)


@dataclass(init=False)
class Opened:
    """A request's session and what the core knows about where it came from.

    Made for every request: its __init__ sets what a request opens with, and every other
    field reads as its default (a class attribute) until a request sets its own."""

    session: Session
    ref: CookieRef | None = None
    record: Record | None = None
    rejected: str | None = None
    cookie_is_stale: bool = False
    # What to delete when the request commits (a dead record), and what to report: none
    # for most requests, so empty tuples, not lists made for every one.
    cleanup: Sequence[Command] = ()
    client_info: ClientInfo | None = None
    changes: tuple[list[tuple[str, str]], list[str]] | None = None  # see _changes
    # An epoch this very request gave the session's user (a password change made in it,
    # by a compare-and-set from the epoch the session carried: see bump_from_request): the
    # one epoch besides its own that the session may be re-stamped with.
    own_epoch: str | None = None
    # Store the session even while it is empty (Django's save() and create() do).
    store_empty: bool = False
    events: Sequence[SessionEvent] = ()
    loaded: Sequence[Any] | None = None  # the record's fields as read: see RecordReader.written

    def __init__(
        self,
        session: Session,
        ref: CookieRef | None = None,
        record: Record | None = None,
        *,
        cookie_is_stale: bool = False,
        client_info: ClientInfo | None = None,
        loaded: Sequence[Any] | None = None,
    ) -> None:
        self.session, self.ref, self.record = session, ref, record
        self.client_info, self.loaded = client_info, loaded
        if cookie_is_stale:
            self.cookie_is_stale = True


@dataclass(slots=True)  # not frozen: made for every write, and frozen costs more
class Committed:
    """What committing a request's session came to: the cookie change, and whether and why
    the request's changes were not saved."""

    cookie: CookieUpdate | None  # what to do to the cookie, if anything
    set_cookie: str | None  # the same, as the Set-Cookie header of the ASGI and WSGI drivers
    depends_on_session: bool
    # Why the request's changes were not saved, if they were not: 'gone' or 'epoch'.
    interrupted: Interrupted | None = None
    # 'epoch' when the request's own login or rotation was refused: it ends logged out.
    rejected: str | None = None
    events: tuple[SessionEvent, ...] = ()


# What settled() gives a request that writes nothing (most reads): shared, never changed.
_SETTLED = Committed(None, None, False)
_SETTLED_ACCESSED = Committed(None, None, True)


class Core:
    """The sans-I/O session lifecycle: opens a request's session from its cookie, and commits
    it (write, login, logout, rotation) as steps for a driver to run against Redis and SQL."""

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
        max_sessions_per_user: int = 0,
    ) -> None:
        self.keys = keys
        self.codec = codec
        self.provider = provider
        self.timing = timing
        self.track_devices = track_devices
        self.max_bytes = max_bytes
        self.cipher = cipher
        self.max_sessions_per_user = max_sessions_per_user
        self.fields = FieldCodec(cipher)
        self.writes = Writes(keys, timing, max_bytes, self.fields)
        self.records = RecordReader(cipher, max_bytes)
        # handle -> (its tag, the read of its record and epoch, the epoch key): the same
        # read for every request of a session, built once (see _read_of)
        self._reads: dict[str, tuple[str, RedisIO, str | None]] = {}

    def with_timing(self, timing: Timing) -> Core:
        """This core with other lifetimes (a framework's own, as Flask's)."""
        if timing is self.timing:
            return self
        return Core(
            self.keys,
            self.codec,
            self.provider,
            timing,
            track_devices=self.track_devices,
            max_bytes=self.max_bytes,
            cipher=self.cipher,
            max_sessions_per_user=self.max_sessions_per_user,
        )

    # -- reading --------------------------------------------------------------------

    def open(
        self,
        cookie_header: str | None,
        now: float,
        client_info: ClientInfo | None = None,
        found: CookieRef | None = None,
    ) -> Step[Opened]:
        """The request's session; a refused one is reported as a "rejected" event. `found`:
        the header's session cookie, when the caller looked it up already (RequestCycle
        does, to give a request with none its session at once: see fresh).

        One round trip: the record and its user's epoch, read by a pipeline. An epoch that
        is the record's stamp is as good as the atomic read's (record_commands.
        pipelined_read says why); any other answer costs a second round trip, READ, and only
        READ's answer may reject the session for its epoch."""
        ref = self.codec.find(cookie_header) if found is None else found
        if ref is None:
            return self.fresh(client_info)
        handle = ref.handle
        known = self._reads.get(handle)
        if known is None or known[0] != ref.tag:
            known = self._read_of(ref)
        _, reading, epoch_key = known
        read = pipelined_read((yield reading))
        if read is not None:
            opened = yield from self._opened(ref, handle, read, now, client_info, final=False)
            if opened is not None:
                return opened
        (reply,) = yield RedisIO((self.writes.read_with_epoch(ref.tag, handle, epoch_key),))
        read = ReadCall.reply(reply)
        opened = yield from self._opened(ref, handle, read, now, client_info, final=True)
        assert opened is not None
        return opened

    def _read_of(self, ref: CookieRef) -> tuple[str, RedisIO, str | None]:
        """The read of a session's record and its user's epoch (Writes.read_pipelined), and
        the epoch key, remembered for its next requests."""
        epoch_key = self.provider.cached_key(ref.tag)
        commands = self.writes.read_pipelined(ref.tag, ref.handle, epoch_key)
        read = (ref.tag, RedisIO(commands, errors_as_replies=True), epoch_key)
        if len(self._reads) >= READS_REMEMBERED:
            self._reads.clear()
        self._reads[ref.handle] = read
        return read

    def fresh(self, client_info: ClientInfo | None = None) -> Opened:
        """The session of a request that carries no session cookie of ours: a new, empty
        one, with nothing to read (what `open` gives such a request, at once)."""
        return Opened(self._session(), client_info=client_info)

    def _opened(
        self,
        ref: CookieRef,
        handle: str,
        read: ReadReply,
        now: float,
        client_info: ClientInfo | None,
        final: bool,
    ) -> Step[Opened | None]:
        """The session that `read` found; None, unless `final`, when the record's epoch was
        not the one read beside it."""
        fields, cached = read.fields, read.epoch
        if not fields:
            return self._stale(ref, client_info)
        try:
            flat = flat_fields(fields)
            record = self.records.read(flat)
        except CorruptRecord as error:
            stale = self._stale(ref, client_info)
            self._drop(stale, f"a session record that is not ours ({error})", handle)
            yield Emit(tuple(stale.events))
            return stale
        dead, _ = yield from self.liveness(record, ref.tag, cached, now)
        if dead is None:
            session = Session(
                None, record.user_id, max_value_bytes=self.max_bytes, stored=record.stored
            )
            session.handle = handle
            return Opened(session, ref, record, client_info=client_info, loaded=flat)
        if dead == "epoch" and not final:
            return None
        stale = self._refused(ref, record, dead, handle, client_info)
        yield Emit(tuple(stale.events))
        return stale

    def _refused(
        self,
        ref: CookieRef,
        record: Record,
        dead: Dead,
        handle: str,
        client_info: ClientInfo | None,
    ) -> Opened:
        """The stand-in for a dead record (see liveness), with its clean-up and event."""
        stale = self._stale(ref, client_info)
        if dead == "foreign":
            self._drop(stale, "a session record under another user's tag", handle)
        elif dead == "expired":
            stale.cleanup = self.writes.forget(ref, listed=record.user_id is not None)
            stale.events = (SessionEvent("rejected", record.user_id, handle, "expired"),)
        else:
            stale.rejected = "epoch"
            stale.cleanup = self.writes.forget(ref, listed=True)
            stale.events = (SessionEvent("rejected", record.user_id, handle, "epoch"),)
        return stale

    def _stale(self, ref: CookieRef, client_info: ClientInfo | None) -> Opened:
        """An empty session in place of the one a cookie named: its cookie is to be cleared."""
        return Opened(self._session(), ref=ref, cookie_is_stale=True, client_info=client_info)

    def restamp(self, cookie_header: str, user_id: Any, epoch: str, now: float) -> Step[bool]:
        """Stamp the stored session of this cookie with `epoch`, an epoch this very request
        gave `user_id` (a password change committed after the session was saved): only if
        the session is that user's and `epoch` is still the user's. Whether it was."""
        ref = self.codec.find(cookie_header)
        if ref is None:
            return False
        read = self.writes.read_with_epoch(ref.tag, ref.handle, None)
        (reply,) = yield RedisIO((read,))
        fields = ReadCall.reply(reply).fields
        try:
            record = self.records.read(flat_fields(fields)) if fields else None
        except CorruptRecord:
            return False
        if record is None or record.user_id is None or record.epoch is None:
            return False
        if user_id_text(record.user_id) != user_id_text(user_id):
            return False
        guard = Guard(self._guard_mode(ref.tag), record.epoch, epoch, stamp=epoch)
        (outcome,) = yield RedisIO((self.writes.write(ref, record, guard, [], [], now),))
        return WriteCall.reply(outcome).outcome == WRITTEN

    def bump_from_request(
        self, user_id: Any, ref: CookieRef | None, stamp: str | None, carried: str | None
    ) -> Step[str | None]:
        """Give `user_id` a new epoch from a request (a password change) whose session,
        `ref`, stored stamped `stamp`, carries `carried`, an epoch of that user's (None:
        not a session of theirs; `carried` differs from `stamp` once the request bumped
        before and its provider did not re-stamp). Every other session ends; this one is
        re-stamped by the bump's own step where the provider can (see _end_others), so a
        request of it in between (a second tab) is not refused for its epoch.

        Returns the new epoch when this session may be re-stamped with it: a
        compare-and-set from `carried` made it. None when the compare failed (the sessions
        were ended while the request was in flight: the bump is made anyway, and this
        session ends with the others), or when the bump could not be made durable: the
        session is then ended here, and the failure reported."""
        try:
            if ref is not None and stamp is not None and carried is not None:
                stamped = self._stamped(ref, stamp)
                bump = self.provider.bump_if(user_id, ref.tag, carried, stamped, restamp=True)
                epoch = yield from bump
                if epoch is not None:
                    return epoch
            yield from self.provider.bump_epoch(user_id)
            return None
        except NOT_DURABLE as error:
            if ref is None or carried is None:
                raise  # no session here to end: the caller hears it, as from invalidate_user
            _log_not_durable("a password change", error)
            handle = ref.handle
            yield RedisIO(tuple(self.writes.forget(ref, listed=True)))
            yield Emit((SessionEvent("rejected", user_id, handle, "unreplicated"),))
            return None

    def stored_stamp(self, loaded: str | None, own_epoch: str | None) -> str | None:
        """The stamp that a session loaded stamped `loaded` is stored with now, once this
        request gave its user `own_epoch` (None: it did not) by a bump from it, which
        re-stamped it where the provider could (`restamps`)."""
        if own_epoch is not None and self.provider.restamps:
            return own_epoch
        return loaded

    def liveness(
        self, record: Record, tag: str, cached: Any, now: float
    ) -> Step[tuple[Dead | None, str | None]]:
        """Whether a record stored under `tag` is alive: the one check of a request and of
        the operations on a user's sessions. Why it is dead (None: alive), and the user's
        epoch when it was looked up. `cached` is what `provider.cached_key(tag)` held.

        Dead: under a tag that is not its user's ('foreign'), past its lifetime or idle
        timeout ('expired'), or stamped with an epoch that is not its user's ('epoch').
        """
        if record.user_id is not None and tag not in self.keys.user_tags(record.user_id):
            return "foreign", None
        if self.timing.expired(record, now):
            return "expired", None
        if record.user_id is None:
            return None, None
        # A value in `provider.cached_key(tag)` is the user's current epoch (the Protocol's
        # promise); the provider is asked only on a miss.
        epoch = text(cached)
        if epoch is None:
            epoch = yield from self.provider.resolve(record.user_id, tag, None)
        return (None if same_epoch(epoch, record.epoch) else "epoch"), epoch

    def _drop(self, stale: Opened, why: str, handle: str) -> None:
        """A record this package could not have written: logged, deleted, reported."""
        assert stale.ref is not None
        key = self.keys.record_key(stale.ref.tag, handle)
        logger.warning("dropped %s: key %s", why, _fingerprint(key))
        stale.cleanup = self.writes.forget(stale.ref, listed=True)
        stale.events = (SessionEvent("rejected", None, handle, "corrupt"),)

    def _session(self, data: dict[str, Any] | None = None, user_id: Any = None) -> Session:
        return Session(data, user_id, max_value_bytes=self.max_bytes)

    # -- writing --------------------------------------------------------------------

    def settled(self, opened: Opened, now: float) -> Committed | None:
        """What commit would give when it has nothing to write (most reads), else None."""
        session = opened.session
        if opened.cleanup or session.intent is not KEEP:  # every other intent differs
            return None
        if opened.record is None:
            if opened.cookie_is_stale or session.may_have_changed or opened.store_empty:
                return None  # a session to create, or a cookie to clear
        elif self._changed(opened) or self.timing.refresh_due(opened.record, now):
            return None
        return _SETTLED_ACCESSED if session.accessed else _SETTLED

    def commit(self, opened: Opened, now: float, *, unsettled: bool = False) -> Step[Committed]:
        """Carry out the session's intent, in one round trip (a second one only while
        signing keys rotate, or to look up an epoch the cache no longer holds), then report
        its events. `unsettled`: the caller found `settled` None already, at the same `now`.

        The steps below it are as few generators as the decisions allow: a write holds
        each of them alive while it awaits Redis (see docs/performance.md, the garbage
        collector)."""
        settled = None if unsettled else self.settled(opened, now)
        if settled is not None:
            return settled
        depends = opened.session.accessed  # before the commit reads the session itself
        action = opened.session.intent.action
        if action == "login":
            committed = yield from self._login(opened, now, depends)
        elif action == "logout" or opened.record is None or opened.ref is None:
            committed = yield from self._replace(opened, now, depends)
        else:  # the stored record keeps the request's changes (see _kept)
            commands, guard = list(opened.cleanup), self._guard(opened)
            if opened.session.intent.end_others:
                outcome = yield from self._write_ending_others(opened, now, commands, guard)
            else:
                outcome = yield from self._apply(opened, now, guard, commands)
            committed = self._kept(opened, outcome, now, depends)
        if committed.events:
            yield Emit(committed.events)
        return committed

    def _replace(self, opened: Opened, now: float, depends: bool) -> Step[Committed]:
        """A logout, or a session with no stored record: the stored one (if any) is
        deleted, and a new anonymous one is created if there is data to keep."""
        session, record, ref = opened.session, opened.record, opened.ref
        commands = list(opened.cleanup)
        if record is not None and ref is not None:
            commands += self.writes.forget(ref, listed=record.user_id is not None)
        cookie: CookieUpdate | None = None
        if len(session) or opened.store_empty:
            ref = CookieRef(new_anonymous_tag(), new_session_id())
            commands.append(self.writes.create(ref, self._new_record(session, now, None)))
            cookie = self.codec.issue(ref, self.timing.lifetime)
        elif record is not None or opened.cookie_is_stale:
            cookie = self.codec.cleared()
        replies = yield RedisIO(tuple(commands))
        if cookie is not None and cookie.value is not None and not CreateCall.reply(replies[-1]):
            raise StoreUnavailable("a new session id was already in use")  # 2^-256
        events: tuple[SessionEvent, ...] = ()
        if session.intent.action == "logout" and record is not None and record.user_id is not None:
            events = (SessionEvent("logout", record.user_id, self._handle(opened)),)
        return self._committed(cookie, depends, events=events)

    def _kept(self, opened: Opened, outcome: WriteOutcome, now: float, depends: bool) -> Committed:
        """What writing the request's changes (and a log-out-others) to the stored record
        came to."""
        session, record, ref = opened.session, opened.record, opened.ref
        assert record is not None and ref is not None
        handle = self._handle(opened)
        if outcome == "emptied":
            return self._committed(self.codec.cleared(), depends)
        if outcome == "unreplicated":
            event = SessionEvent("rejected", record.user_id, handle, "unreplicated")
            return self._committed(self.codec.cleared(), depends, "epoch", "epoch", (event,))
        events: tuple[SessionEvent, ...] = ()
        if outcome != "written":
            if outcome == "epoch":
                events = (SessionEvent("rejected", record.user_id, handle, "epoch"),)
            return self._committed(None, depends, outcome, events=events)
        cookie = None
        if session.modified:
            # The same id again, as Starlette sends its cookie on every change: the
            # browser's copy is refreshed along with the session.
            cookie = self.codec.issue(ref, self.timing.seconds_left(record, now))
        if session.intent.end_others:
            events = (SessionEvent("logout_others", record.user_id, handle),)
        return self._committed(cookie, depends, events=events)

    def _guard(self, opened: Opened) -> Guard:
        """What a write of the request's changes checks: the session's user's epoch is
        still the one it was loaded with, or the one this request gave them itself
        (`own_epoch`, which the session is then stamped with)."""
        record, ref = opened.record, opened.ref
        assert record is not None and ref is not None
        mode = self._guard_mode(ref.tag) if record.user_id is not None else "none"
        carried = record.epoch or ""
        if opened.own_epoch is not None and record.user_id is not None:
            return Guard(mode, carried, opened.own_epoch, stamp=opened.own_epoch)
        return Guard(mode, carried, carried)

    def _write_ending_others(
        self, opened: Opened, now: float, commands: list[Command], guard: Guard
    ) -> Step[WriteOutcome]:
        """Apply the request's changes with a log-out-others: written; emptied; epoch (the
        compare-and-set of the bump failed: the changes are dropped); or unreplicated: the
        log-out-others could not be made durable, and the session was ended."""
        ref = opened.ref
        assert ref is not None
        try:
            bumped = yield from self._end_others(opened, guard.wanted)
        except NOT_DURABLE as error:
            _log_not_durable("log out the other sessions", error)
            yield RedisIO((*commands, *self.writes.forget(ref, listed=True)))
            return "unreplicated"
        if bumped is None:
            if commands:
                yield RedisIO(tuple(commands))
            return "epoch"
        stamped = Guard(guard.mode, guard.carried, bumped, stamp=bumped)
        return (yield from self._apply(opened, now, stamped, commands))

    def _end_others(self, opened: Opened, current: str) -> Step[str | None]:
        """A new epoch for the session's user, by a compare-and-set from `current` (the
        epoch it carries, or one this request set itself) that also checks the session
        is still stored as loaded: the new epoch, or None when the compare failed. The
        session is re-stamped by the same atomic step where the provider can (see BUMP_IF):
        no other request of it finds the epoch new and its stamp old."""
        record, ref = opened.record, opened.ref
        assert record is not None and record.user_id is not None and ref is not None
        stamped = self._stamped(ref, self.stored_stamp(record.epoch, opened.own_epoch) or "")
        bump = self.provider.bump_if(record.user_id, ref.tag, current, stamped, restamp=True)
        return (yield from bump)

    def _apply(
        self, opened: Opened, now: float, guard: Guard, commands: list[Command]
    ) -> Step[WriteOutcome]:
        """The write script with `guard`, sent after `commands`; once more if the cached
        copy of the epoch had expired and a lookup finds it still the one wanted. Written;
        emptied (an anonymous session left with no data, so deleted); or, the changes
        dropped, gone or epoch (see Committed.interrupted)."""
        record, ref = opened.record, opened.ref
        assert record is not None and ref is not None
        changed, removed = self._changes(opened)
        pairs = self.fields.data_fields(changed, refreshed_field(now))
        deleted = [f"d:{key}" for key in removed]
        expected = grows(record.stored, changed, removed)
        keep_empty = opened.store_empty
        command = self.writes.write(
            ref, record, guard, pairs, deleted, now, keep_empty=keep_empty, grows=expected
        )
        replies = yield RedisIO((*commands, command))
        outcome = self._write_outcome(replies[-1])
        if outcome == "written" and opened.loaded is not None and not deleted and not guard.stamp:
            self.records.written(opened.loaded, record, pairs, changed)
        if outcome != "unknown":
            return outcome
        # The cached copy of the epoch expired: look it up (which refills it), then try
        # once more if it is still the one wanted.
        assert record.user_id is not None
        resolved = yield from self.provider.resolve(record.user_id, ref.tag, None)
        if not same_epoch(resolved, guard.wanted):
            return "epoch"
        (reply,) = yield RedisIO((command,))
        outcome = self._write_outcome(reply)
        return "epoch" if outcome == "unknown" else outcome

    def _write_outcome(self, raw: Any) -> WriteOutcome | Literal["unknown"]:
        """What a WRITE reply means ('unknown': the cached epoch was missing)."""
        if raw.__class__ is int and raw == WRITTEN:  # most writes: nothing more to read
            return "written"
        reply = WriteCall.reply(raw)
        if reply.outcome == TOO_LARGE:
            raise SessionTooLarge("with this request's changes the session would take",
                                  reply.size, self.max_bytes)  # fmt: skip
        return _OUTCOMES.get(reply.outcome, "written")

    def _login(self, opened: Opened, now: float, depends: bool) -> Step[Committed]:
        """Log in under a new session id, as the login plan says (see login_plan.py)."""
        session, record, old = opened.session, opened.record, opened.ref
        user_id = session.intent.user_id
        assert user_id is not None
        ref = CookieRef(self.keys.user_tag(user_id), new_session_id())
        beside = self.provider.login_mode() == "ensure"
        plan = plan_login(session.intent, origin(user_id, record, old, ref.tag), beside)
        carried = None
        if plan.rotation and record is not None:
            carried = opened.own_epoch or record.epoch
        commands: list[Command] = list(opened.cleanup)
        moved: str | None = None
        if plan.old == "forget" and record is not None and old is not None:
            commands += self.writes.forget(old, listed=record.user_id is not None)
        elif plan.old == "move out" and old is not None:
            moved_out, moved = yield from self._move_out(commands, old, ref.tag, carried, plan)
            commands = []
            if not moved_out:
                return (yield from self._refuse([], depends, opened))
        try:
            epoch = yield from self._login_epoch(opened, plan, ref.tag, carried, moved)
        except NOT_DURABLE as error:
            _log_not_durable("log in and out of the other sessions", error)
            ending = [*commands, *(self.writes.forget(old, listed=True) if old else [])]
            return (yield from self._refuse(ending, depends, opened, "unreplicated"))
        if epoch is None:
            return (yield from self._refuse(commands, depends, opened))
        login = self._login_command(opened, now, plan, ref, epoch)
        return (yield from self._logged_in(opened, ref, plan, (*commands, login), depends))

    def _move_out(
        self,
        commands: list[Command],
        old: CookieRef,
        new_tag: str,
        carried: str | None,
        plan: LoginPlan,
    ) -> Step[tuple[bool, str | None]]:
        """Signing keys rotate: the session lives under its old key's tag. Move it out
        (only if it still exists and, when the epochs live beside it, its epoch there is
        still the one it carries), and read the user's epoch under the new tag, which the
        login stamps only if it is still the user's: an invalidation in between refuses
        it. Whether it was moved out, and the epoch read."""
        reads_epoch = plan.epoch in ("moved", "bump if moved")
        steps = [*commands, self.writes.rotate_out(old, carried if reads_epoch else None)]
        if reads_epoch:
            steps.append(self.writes.ensure_epoch(new_tag, new_epoch()))
        replies = yield RedisIO(tuple(steps))
        if not reads_epoch:
            return bool(replies[-1]), None
        return bool(replies[-2]), text(replies[-1])

    def _login_epoch(
        self,
        opened: Opened,
        plan: LoginPlan,
        new_tag: str,
        carried: str | None,
        moved: str | None,
    ) -> Step[str | None]:
        """The epoch the login stamps, from where the plan says (None: refused). A bump is
        durable before the login is written."""
        user_id = opened.session.intent.user_id
        assert user_id is not None
        if plan.epoch == "new":
            return new_epoch()
        if plan.epoch in ("carried", "moved"):
            return carried if plan.epoch == "carried" else moved
        if plan.epoch in ("provider", "provider if carried"):
            epoch = yield from self.provider.login_epoch(user_id)
            if plan.epoch == "provider if carried" and not same_epoch(epoch, carried):
                return None
            return epoch
        if plan.epoch == "bump":
            return (yield from self.provider.bump_epoch(user_id))
        if plan.epoch == "bump if moved":
            if moved is None:
                return None
            return (yield from self.provider.bump_if(user_id, new_tag, moved, None))
        old, record = opened.ref, opened.record
        assert old is not None and record is not None and carried is not None
        stamped = None
        stamp = self.stored_stamp(record.epoch, opened.own_epoch)
        if plan.old == "replace" and stamp:
            stamped = self._stamped(old, stamp)  # the bump checks this session too
        return (yield from self.provider.bump_if(user_id, old.tag, carried, stamped))

    def _login_command(
        self, opened: Opened, now: float, plan: LoginPlan, ref: CookieRef, epoch: str
    ) -> Command:
        """The login script for the new session `ref`, stamped `epoch`."""
        session, record = opened.session, opened.record
        # A later release's metadata moves with a rotated session.
        unknown = record.unknown if plan.rotation and record is not None else None
        extra = None
        if self.track_devices and opened.client_info is not None:
            user_agent, ip = opened.client_info()
            extra = {"ua": (user_agent or "")[:MAX_USER_AGENT] or None, "ip": ip}
        return self.writes.login(
            ref,
            self._new_record(session, now, session.intent.user_id, extra, unknown),
            plan.mode,
            epoch,
            now,
            max_sessions=self.max_sessions_per_user,
            rotating=opened.ref if plan.old == "replace" else None,
        )

    def _logged_in(
        self,
        opened: Opened,
        ref: CookieRef,
        plan: LoginPlan,
        commands: tuple[Command, ...],
        depends: bool,
    ) -> Step[Committed]:
        """Send `commands`, the login script last, and report what it did."""
        user_id = opened.session.intent.user_id
        replies = yield RedisIO(commands)
        logged_in = LoginCall.reply(replies[-1])
        if logged_in is None:
            return (yield from self._refuse([], depends, opened))
        self._log_replaced(ref.tag, logged_in.replaced)
        handle = ref.handle
        events = [SessionEvent("rotation" if plan.rotation else "login", user_id, handle)]
        events += [SessionEvent("evicted", user_id, item) for item in logged_in.ended]
        cookie = self.codec.issue(ref, self.timing.lifetime)
        return self._committed(cookie, depends, events=tuple(events))

    def _committed(
        self,
        cookie: CookieUpdate | None,
        depends: bool,
        interrupted: Interrupted | None = None,
        rejected: str | None = None,
        events: tuple[SessionEvent, ...] = (),
    ) -> Committed:
        header = None if cookie is None else self.codec.render(cookie)
        depends = depends or cookie is not None
        return Committed(cookie, header, depends, interrupted, rejected, events)

    @staticmethod
    def _handle(opened: Opened) -> str | None:
        return None if opened.ref is None else opened.ref.handle

    def _refuse(
        self, commands: list[Command], depends: bool, opened: Opened, reason: Reason = "epoch"
    ) -> Step[Committed]:
        """A rotation or a log-out-others refused: the user's epoch moved (or the session
        was ended) while the request was in flight, or ('unreplicated') the epoch change
        could not be made durable."""
        if commands:
            yield RedisIO(tuple(commands))
        user_id = None if opened.record is None else opened.record.user_id
        event = SessionEvent("rejected", user_id, self._handle(opened), reason)
        return self._committed(self.codec.cleared(), depends, "epoch", "epoch", (event,))

    def _log_replaced(self, tag: str, replaced: str | None) -> None:
        """The keys of the wrong type the login script replaced (see lua_scripts.LOGIN)."""
        for name in filter(None, (replaced or "").split(",")):
            key = self.keys.epoch_key(tag) if name == "epoch" else self.keys.index_key(tag)
            logger.warning(
                "replaced a user's %s of the wrong type: key %s", name, _fingerprint(key)
            )

    def _stamped(self, ref: CookieRef, stamp: str) -> tuple[str, str]:
        """The session of `ref` as a bump from it checks it: still stored, stamped `stamp`."""
        return self.keys.record_key(ref.tag, ref.handle), stamp

    def _guard_mode(self, tag: str) -> EpochGuard:
        if self.provider.cached_key(tag) is None:
            return "none"
        return "redis" if self.provider.login_mode() == "ensure" else "cache"

    def _changes(self, opened: Opened) -> tuple[list[tuple[str, str]], list[str]]:
        if opened.changes is None:
            stored = opened.record.stored if opened.record is not None else {}
            opened.changes = opened.session.changes(stored)
        return opened.changes

    def _changed(self, opened: Opened) -> bool:
        session = opened.session
        if not session.may_have_changed:
            return False
        changed, removed = self._changes(opened)
        return bool(changed or removed)

    def _new_record(
        self,
        session: Session,
        now: float,
        user_id: Any,
        extra: Mapping[str, Any] | None = None,
        unknown: Mapping[str, str] | None = None,
    ) -> Record:
        expires = self.timing.new_expiry(now)
        return new_record(session.texts(), now, expires, user_id, extra, unknown)


# What each WRITE reply but WRITTEN and TOO_LARGE means (see Core._write_outcome).
_OUTCOMES: dict[int, WriteOutcome | Literal["unknown"]] = {
    GONE: "gone",
    EMPTIED: "emptied",
    EPOCH_MOVED: "epoch",
    EPOCH_UNKNOWN: "unknown",
}


def same_epoch(current: str | None, stamped: str | None) -> bool:
    if current is None or stamped is None:
        return False
    return hmac.compare_digest(current.encode(), stamped.encode())


def _log_not_durable(what: str, error: Exception) -> None:
    logger.warning(
        "a request's epoch change (%s) could not be made durable (%s: %s); its session ends",
        what, type(error).__name__, error,
    )  # fmt: skip


def _fingerprint(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
