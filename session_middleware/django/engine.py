"""SESSION_ENGINE = "session_middleware.django": Django's ``request.session`` in Redis.

Django's SessionMiddleware reads the cookie named SESSION_COOKIE_NAME and passes its value
here as the session key. That value is the signed cookie the core issues, so a key this
package did not sign is never looked up. Loading checks the user's epoch and writing goes
through the core, exactly as under the ASGI and WSGI drivers; each operation exists once,
as a core step, and runs on the sync or the async Redis client.

Where Django's own backends do I/O at once (``cycle_key``), this store records the intent
and the core carries it out in the one write at the end of the request.
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.core.signals import request_finished, request_started

from .._core.lifecycle import ClientInfo, Opened
from .._core.steps import Step
from .._protocol.key_layout import UserId, user_id_text
from .._protocol.timing import custom_expiry_passed
from .._request_cycle import follow_login_key
from ..session import Session
from ._settings import get_config

logger = logging.getLogger("session_middleware")

EXPIRY_KEY = "_session_expiry"
IMPORT_SETTING = "SESSION_MIDDLEWARE_IMPORT_FROM"
CLEAR_EXPIRED_REASON = (
    "Nothing to clear: session_middleware gives every session record a Redis TTL, "
    "so Redis deletes expired sessions itself."
)


_current: ContextVar[weakref.ref[SessionStore] | None] = ContextVar(
    "session_middleware_django_store", default=None
)


def current_store() -> SessionStore | None:
    """The store Django's SessionMiddleware made for the request being handled, if any."""
    ref = _current.get()
    return None if ref is None else ref()


def _forget_current(**kwargs: Any) -> None:
    """Between requests there is no current store: a password changed from a shell or a
    task must not re-stamp the session of whichever request this thread served last."""
    _current.set(None)


request_started.connect(_forget_current, dispatch_uid="session_middleware.request_started")
request_finished.connect(_forget_current, dispatch_uid="session_middleware.request_finished")


class SessionStore(SessionBase):  # type: ignore[misc]
    """Django's session API on a session_middleware session.

    Beyond Django's API: ``user_id`` (the user the session is bound to), ``handle`` (its
    public handle, as list_sessions shows it), ``rejected`` ("epoch" when the stored
    session was refused because the user's epoch changed) and ``logout_others()`` /
    ``alogout_others()``.
    """

    _session_key: str | None  # Django's validating property
    _session_cache: Session

    def __init__(self, session_key: str | None = None) -> None:
        self._config = get_config()
        self._core = self._config.core
        self._opened: Opened | None = None
        self._modified = False
        self._legacy_key: str | None = None
        self.rejected: str | None = None
        #: The user agent and IP of the request, recorded at a login: set by the
        #: middleware for every request, and by django.contrib.auth's login (auth.py).
        self.client_info: ClientInfo | None = None
        self._own_epoch: tuple[str, str] | None = None
        self._saved_key: str | None = None  # the key this store last saved under
        self._lost = False  # that session was ended by someone else since
        super().__init__(session_key)
        _current.set(weakref.ref(self))
        if self._session_key is None and session_key and getattr(settings, IMPORT_SETTING, None):
            self._legacy_key = session_key

    # -- Django's hooks ------------------------------------------------------------

    def _validate_session_key(self, key: object) -> bool:
        return isinstance(key, str) and self._core.codec.decode(key) is not None

    @property
    def modified(self) -> bool:
        """True when the session must be saved: changed, or due for the write-back that
        records activity (last seen, and the idle timeout's sliding expiry)."""
        opened = self._opened
        if self._modified or (opened is not None and opened.session.modified):
            return True
        if opened is None or opened.record is None:
            return False
        return self._core.timing.refresh_due(opened.record, time.time())

    @modified.setter
    def modified(self, value: bool) -> None:
        self._modified = value
        if not value and self._opened is not None:
            self._opened.session.modified = False

    def _get_session(self, no_load: bool = False) -> Session:
        self.accessed = True
        if self._opened is not None:
            return self._opened.session
        if self._legacy_key is not None:
            return self._use(self._imported(self._legacy_store().load()))
        if self.session_key is None or no_load:
            return self._use(Opened(self._new_session()))
        return self._use(self._config.run_sync(self._open_step(time.time())))

    _session = property(_get_session)

    async def _aget_session(self, no_load: bool = False) -> Session:
        self.accessed = True
        if self._opened is not None:
            return self._opened.session
        if self._legacy_key is not None:
            return self._use(self._imported(await self._legacy_store().aload()))
        if self.session_key is None or no_load:
            return self._use(Opened(self._new_session()))
        return self._use(await self._config.run_async(self._open_step(time.time())))

    def load(self) -> dict[str, Any]:
        self._forget_loaded()
        return dict(self._get_session().data)

    async def aload(self) -> dict[str, Any]:
        self._forget_loaded()
        return dict((await self._aget_session()).data)

    def exists(self, session_key: str) -> bool:
        return bool(self._config.run_sync(self._exists_step(session_key, time.time())))

    async def aexists(self, session_key: str) -> bool:
        return bool(await self._config.run_async(self._exists_step(session_key, time.time())))

    def create(self) -> None:
        """A new, empty session, stored now under a new key (as Django's backends do)."""
        self._use(Opened(self._new_session()))
        self._session_key = None
        self.save(must_create=True)
        self.modified = True

    async def acreate(self) -> None:
        self._use(Opened(self._new_session()))
        self._session_key = None
        await self.asave(must_create=True)
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        self._get_session()
        legacy = self._legacy_key
        self._config.run_sync(self._save_step(must_create, time.time()))
        if legacy is not None:
            self._legacy_store(legacy).delete()

    async def asave(self, must_create: bool = False) -> None:
        await self._aget_session()
        legacy = self._legacy_key
        await self._config.run_async(self._save_step(must_create, time.time()))
        if legacy is not None:
            await self._legacy_store(legacy).adelete()

    def delete(self, session_key: str | None = None) -> None:
        if session_key is not None and session_key != self.session_key:
            SessionStore(session_key).delete()
            return
        self._get_session()
        self._config.run_sync(self._end_step(time.time()))

    async def adelete(self, session_key: str | None = None) -> None:
        if session_key is not None and session_key != self.session_key:
            await SessionStore(session_key).adelete()
            return
        await self._aget_session()
        await self._config.run_async(self._end_step(time.time()))

    def is_empty(self) -> bool:
        """As Django's, but a new session with a login to carry out is not empty: Django's
        SessionMiddleware saves it, as the other integrations do, data or none."""
        opened = self._opened
        if opened is not None and opened.session.pending_login is not None:
            return False
        return bool(super().is_empty())

    def clear(self) -> None:
        self._get_session().clear()
        self.accessed = True
        self.modified = True

    def flush(self) -> None:
        """End this session now (its record is deleted) and start an empty one."""
        self.delete()
        self.accessed = True
        self.modified = True

    async def aflush(self) -> None:
        await self.adelete()
        self.accessed = True
        self.modified = True

    def cycle_key(self) -> None:
        """A new key for the same data, now, and the old key ends, as with Django's own
        backends; a session not stored yet has no key to end and gets one when saved. A
        logged-in session keeps its epoch (a compare-and-set: refused, with UpdateError,
        if the user was invalidated meanwhile)."""
        if self._rotate(self._get_session()):
            with self._refusal_kept():
                self.save()

    async def acycle_key(self) -> None:
        if self._rotate(await self._aget_session()):
            with self._refusal_kept():
                await self.asave()

    @contextlib.contextmanager
    def _refusal_kept(self) -> Iterator[None]:
        """A refused rotation (the session was ended meanwhile) raises nothing inside the
        view; every later save of this store raises UpdateError instead, which Django's
        SessionMiddleware answers with SessionInterrupted (a 400): no session is issued."""
        try:
            yield
        except UpdateError:
            self._lost = True

    def get_session_cookie_age(self) -> int:
        """Seconds the session has left on the server (its lifetime for a new one)."""
        opened = self._opened
        if opened is not None and opened.record is not None:
            session = opened.session
            if session.pending_login is None and not session.ended:
                return self._core.timing.seconds_left(opened.record, time.time())
        return self._core.timing.lifetime

    def get_expiry_age(self, **kwargs: Any) -> int:
        """As Django's, but never past the session's end on the server: a set_expiry() longer
        than SESSION_COOKIE_AGE is capped by it, and this says so instead of promising more."""
        age: int = super().get_expiry_age(**kwargs)
        if "modification" in kwargs or "expiry" in kwargs:
            return age
        return min(age, self.get_session_cookie_age())

    @classmethod
    def clear_expired(cls) -> None:
        """A no-op: Redis expires session records by their TTL."""
        logger.info(CLEAR_EXPIRED_REASON)

    @classmethod
    async def aclear_expired(cls) -> None:
        logger.info(CLEAR_EXPIRED_REASON)

    # -- beyond Django's API ---------------------------------------------------------

    def as_session(self) -> Session:
        """The Session behind ``request.session``: what ``get_session(request)`` returns.
        Changes made through it are saved with the response like any other."""
        return self._get_session()

    @property
    def handle(self) -> str | None:
        """The public handle of the stored session (None until stored)."""
        return self._get_session().handle

    @property
    def user_id(self) -> UserId | None:
        """The user this session is bound to; login() binds it when the session is saved."""
        return self._get_session().user_id

    def logout_others(self) -> None:
        """End every other session of the logged-in user; this one stays."""
        self._logout_others(self._get_session())

    async def alogout_others(self) -> None:
        self._logout_others(await self._aget_session())

    def password_changed(self, user_id: UserId) -> None:
        """This request changed the password of `user_id`: give the user a new epoch with
        a compare-and-set from the one this session carries (see Core.bump_from_request).
        The session, if logged in as that user and still valid, is re-stamped with the new
        epoch when saved, as long as it is still the user's epoch then; otherwise it ends."""
        opened = self._stored_session_of(user_id)
        ref = stamp = carried = None
        if opened is not None and opened.record is not None:
            ref, stamp = opened.ref, opened.record.epoch
            carried = stamp
            if self._own_epoch is not None and self._own_epoch[0] == user_id_text(user_id):
                carried = self._own_epoch[1]  # bumped before in this request, not saved yet
                stamp = self._core.stored_stamp(stamp, carried)
        bump = self._core.bump_from_request(user_id, ref, stamp, carried)
        epoch = self._config.run_sync(bump)
        if epoch is None:
            if opened is not None:
                self._forget_loaded()  # ended: the next access finds it so
            return
        self._own_epoch = (user_id_text(user_id), epoch)
        if self._saved_key is not None:
            # Saved before the change committed (inside the transaction): stamp it now.
            cookie = f"{self._core.codec.name}={self._saved_key}"
            self._config.run_sync(self._core.restamp(cookie, user_id, epoch, time.time()))
            self._forget_loaded()

    def _stored_session_of(self, user_id: UserId) -> Opened | None:
        """The session as stored and loaded now, if it is logged in as `user_id`."""
        self._get_session()
        opened = self._opened
        if opened is None or opened.record is None or opened.record.user_id is None:
            return None
        if user_id_text(opened.record.user_id) != user_id_text(user_id):
            return None
        return opened

    # -- the steps, run on either Redis client -----------------------------------------

    def _open_step(self, now: float) -> Step[Opened]:
        opened = yield from self._core.open(f"{self._core.codec.name}={self.session_key}", now)
        if opened.record is None:
            self.rejected = opened.rejected
            if opened.cleanup:
                yield from self._core.commit(opened, now)
            self._lost = self._lost or (
                self._saved_key is not None and self._saved_key == self.session_key
            )
            self._session_key = None
            return Opened(self._new_session())
        if _expired_by_set_expiry(opened, now):
            opened.session.logout()
            yield from self._core.commit(opened, now)
            self._session_key = None
            return Opened(self._new_session())
        return opened

    def _exists_step(self, session_key: str, now: float) -> Step[bool]:
        opened = yield from self._core.open(f"{self._core.codec.name}={session_key}", now)
        return opened.record is not None

    def _save_step(self, must_create: bool, now: float) -> Step[None]:
        opened = self._opened
        assert opened is not None
        if must_create and opened.record is not None:
            raise CreateError("this session is already stored")
        if self._lost and opened.record is None and opened.session.modified:
            # Saved by (or loaded into) this store, ended by another since: never brought
            # back, and no other session issued in its place.
            raise UpdateError("the session was ended by another request (gone)")
        opened.store_empty = True
        _follow_auth(opened.session)
        if opened.client_info is None:
            opened.client_info = self.client_info
        user = opened.session.pending_login or opened.session.user_id
        if self._own_epoch is not None and user is not None:
            own_user, epoch = self._own_epoch
            opened.own_epoch = epoch if user_id_text(user) == own_user else None
        committed = yield from self._core.commit(opened, now)
        if committed.cookie is not None and committed.cookie.value is not None:
            self._session_key = committed.cookie.value
        self._legacy_key = None
        self._saved_key = self._session_key
        self._forget_loaded()
        if committed.interrupted is not None:
            if committed.rejected is not None:
                self._session_key = None
            # As Django's own backends do for a session deleted meanwhile: Django's
            # SessionMiddleware turns this into SessionInterrupted (a 400).
            raise UpdateError(f"the session was ended by another request ({committed.interrupted})")

    def _end_step(self, now: float) -> Step[None]:
        opened = self._opened
        if opened is not None and opened.record is not None:
            opened.session.logout()
            yield from self._core.commit(opened, now)
        self._use(Opened(self._new_session()))
        self._session_key = None

    # -- state ---------------------------------------------------------------------

    def _new_session(self) -> Session:
        return Session(max_value_bytes=self._core.max_bytes)

    def _use(self, opened: Opened) -> Session:
        self._opened = opened
        self._session_cache = opened.session
        return opened.session

    def _forget_loaded(self) -> None:
        """Drop the loaded state; the next access loads the stored session again."""
        self._opened = None
        self.__dict__.pop("_session_cache", None)

    def _rotate(self, session: Session) -> bool:
        """Ask for a new key; whether a stored session is to be moved now."""
        opened = self._opened
        stored = opened is not None and opened.record is not None
        if session.user_id is not None:
            session.login(session.user_id)
        elif stored:
            session.regenerate_id()
        self.modified = True
        return stored

    def _logout_others(self, session: Session) -> None:
        _follow_auth(session)
        session.logout_others()
        self.modified = True

    # -- sessions of the previous engine ----------------------------------------------

    def _legacy_store(self, key: str | None = None) -> SessionBase:
        engine = import_module(getattr(settings, IMPORT_SETTING))
        return engine.SessionStore(key or self._legacy_key)

    def _imported(self, data: Mapping[str, Any]) -> Opened:
        """A new session holding what the previous engine stored under this key."""
        session = self._new_session()
        dropped = session.adopt(data)
        if dropped:
            logger.warning("imported a session, leaving out %d value(s) JSON cannot hold", dropped)
        if not data:
            self._legacy_key = None
        return Opened(session)


def _follow_auth(session: Session) -> None:
    """Bind the session to the user that django.contrib.auth.login() stored in it. Every
    value read is compared with the stored one at the save: Django saves what its
    ``modified = True`` marks, a value changed in place included."""
    session._compare_all()
    if session._peek(SESSION_KEY) is not None:
        follow_login_key(session, SESSION_KEY)


def _expired_by_set_expiry(opened: Opened, now: float) -> bool:
    """Whether a custom expiry (``set_expiry``) has passed, as Django's backends decide."""
    record = opened.record
    assert record is not None
    return custom_expiry_passed(opened.session._peek(EXPIRY_KEY), record.refreshed, now)
