"""The Session that handlers see: a dict of JSON values that tracks what changed. It never
does I/O.

A stored session's values stay JSON text until they are read: a request that reads two
keys of a large session decodes two values.

``login``, ``logout``, ``logout_others`` and ``regenerate_id`` record an intent; the driver
carries it out when the response starts, the same way under ASGI and WSGI.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

from ._protocol.key_layout import UserId, user_id_text
from ._protocol.records import check_json_value, checked_json, decode_value
from .errors import CorruptRecord

_MISSING: Any = object()
_NOTHING_HANDED_OUT: Any = frozenset()  # a Session's until a list or dict is handed out
T = TypeVar("T")
logger = logging.getLogger("session_middleware")


class _Undecoded:
    """What a Session's dict holds for a stored value not read yet. Every way of reading a
    dict in Python reaches the value through the Session's methods, which decode it first;
    only a C library that reads a dict's storage directly (``orjson.dumps(session)``) meets
    this: give it ``dict(session)``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<a session value not decoded yet: read it through the session, or dict(session)>"


_UNDECODED: Any = _Undecoded()


def json_key(key: object) -> str:
    """The key as JSON writes an object key: str as it is; an int, float, bool or None as
    ``json.dumps`` spells it (as with Starlette's cookie sessions); TypeError otherwise."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return str(json.loads(json.dumps({key: 0})).popitem()[0])
    raise TypeError(f"session keys must be str, not {type(key).__name__} ({key!r})")


def _loaded_text(stored: Mapping[str, str], key: str) -> str | None:
    """The JSON `key` was loaded with; None if it had none, or one that does not read (not
    UTF-8: see records.ReceivedTexts), which a write replaces."""
    try:
        return stored.get(key)
    except CorruptRecord:
        return None


@dataclass(frozen=True, slots=True)
class Intent:
    """What a handler asked to happen to its session, carried out when the response starts:
    keep it (writing what changed), log `user_id` in under a new id, or log out; and, with
    `end_others`, end every other session of the user (a new epoch)."""

    action: Literal["keep", "login", "logout"] = "keep"
    user_id: UserId | None = None  # whom a login binds the session to
    end_others: bool = False


KEEP = Intent()


class Session(dict[str, Any]):
    """A dict of JSON values, bound to at most one user.

    It is a real ``dict`` (``isinstance(session, dict)``, ``json.dumps(session)``,
    ``session | {...}``), so code written for Starlette's cookie sessions runs unchanged;
    every change goes through the methods below, which check that JSON can hold the value
    and remember which keys changed, so that only those are written.
    """

    __slots__ = (
        "_frozen",
        "_handed_out",
        "_nested_out",
        "_stored",
        "_undecoded",
        "_user_id",
        "_written",
        "accessed",
        "handle",
        "intent",
        "max_value_bytes",
        "modified",
    )

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        user_id: UserId | None = None,
        *,
        max_value_bytes: int | None = None,
        stored: Mapping[str, str] | None = None,
    ) -> None:
        """`stored`: the session's values as a record stores them (each key's JSON), in
        place of `data`: each is decoded when first read."""
        if stored:
            super().__init__(dict.fromkeys(stored, _UNDECODED))
        else:
            super().__init__(data or ())
        self._stored: Mapping[str, str] = stored or {}
        self._undecoded = bool(stored)  # some values may still be JSON text
        self.max_value_bytes = max_value_bytes
        self._user_id = user_id
        self._frozen: str | None = None
        self._written: set[Any] = set()  # keys assigned or deleted
        # Keys whose list or dict was handed out (None: every key is compared at the end).
        self._handed_out: set[Any] | None = _NOTHING_HANDED_OUT
        self._nested_out = False  # a list or dict was handed out: it may be changed in place
        # As Starlette's Session: read or changed (the response depends on it: Vary), and
        # changed; Starlette's request.session calls mark_accessed().
        self.accessed = False
        self.modified = False
        self.intent = KEEP
        #: The public handle of this stored session (see list_sessions); None until stored.
        self.handle: str | None = None

    # -- reading ----------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        value = dict.__getitem__(self, key)
        if value is _UNDECODED:
            value = self._decode(key)
        if isinstance(value, (list, dict)):
            self._hand_out(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        value = dict.get(self, key, _MISSING)
        if value is _MISSING:
            return default
        if value is _UNDECODED:
            value = self._decode(key)
        if isinstance(value, (list, dict)):
            self._hand_out(key)
        return value

    def __iter__(self) -> Iterator[str]:
        self.accessed = True
        return dict.__iter__(self)

    def __len__(self) -> int:
        self.accessed = True
        return dict.__len__(self)

    def __contains__(self, key: object) -> bool:
        self.accessed = True
        return dict.__contains__(self, key)

    def keys(self) -> Any:
        self.accessed = True
        return dict.keys(self)

    def values(self) -> Any:
        self._hand_out_all()
        return dict.values(self)

    def items(self) -> Any:
        self._hand_out_all()
        return dict.items(self)

    def copy(self) -> dict[str, Any]:
        """A plain dict of the data (shallow, as dict.copy)."""
        self._hand_out_all()
        return dict(dict.items(self))

    def __or__(self, other: Any) -> dict[str, Any]:  # type: ignore[override]
        if not isinstance(other, Mapping):
            return NotImplemented
        return {**self.copy(), **other}

    def __ror__(self, other: Any) -> dict[str, Any]:  # type: ignore[override]
        if not isinstance(other, Mapping):
            return NotImplemented
        return {**other, **self.copy()}

    def __eq__(self, other: object) -> bool:
        self.accessed = True
        self._decode_all()
        return dict.__eq__(self, other)

    def __repr__(self) -> str:
        return f"<Session user_id={self._user_id!r} keys={sorted(map(str, dict.keys(self)))!r}>"

    # -- changing ---------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        self._check_writable()
        check_json_value(json_key(key), self._storable(value), self.max_value_bytes)
        dict.__setitem__(self, key, value)
        self._written.add(key)
        self.modified = self.accessed = True

    def __delitem__(self, key: str) -> None:
        self._check_writable()
        dict.__delitem__(self, key)
        self._written.add(key)
        self.modified = self.accessed = True

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        self._check_writable()
        value = dict.get(self, key, _MISSING)
        if value is _UNDECODED:
            value = self._decode(key)
        if value is not _MISSING:
            dict.__delitem__(self, key)
            self._written.add(key)
            self.modified = self.accessed = True
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    def popitem(self) -> tuple[str, Any]:
        """Remove and return the last pair inserted, as dict does."""
        self._check_writable()
        self._decode_all()
        key, value = dict.popitem(self)
        self._written.add(key)
        self.modified = self.accessed = True
        return key, value

    def setdefault(self, key: str, default: Any = None) -> Any:
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value
        self[key] = default
        return default

    def update(self, other: Any = (), /, **more: Any) -> None:
        pairs: Iterable[tuple[Any, Any]]
        if isinstance(other, Mapping):
            pairs = other.items()
        elif hasattr(other, "keys"):
            pairs = ((key, other[key]) for key in other.keys())  # noqa: SIM118
        else:
            pairs = other
        for key, value in pairs:
            self[key] = value
        for key, value in more.items():
            self[key] = value

    def __ior__(self, other: Any) -> Session:  # type: ignore[override]
        self.update(other)
        return self

    def clear(self) -> None:
        self._check_writable()
        if dict.__len__(self):
            self._written.update(dict.keys(self))
            dict.clear(self)
        self.modified = self.accessed = True

    def mark_modified(self) -> None:
        """Force a write-back, e.g. after changing a nested value in place."""
        self._check_writable()
        self._handed_out = None  # compare every key with what was loaded
        self.modified = self.accessed = True

    @property
    def data(self) -> dict[str, Any]:
        """The session itself, as a dict (kept for code written against earlier versions)."""
        self._hand_out_all()
        return self

    # -- what changed -------------------------------------------------------------------

    def changes(self, stored: Mapping[str, str]) -> tuple[list[tuple[str, str]], list[str]]:
        """What differs from `stored` (each key's JSON as loaded): the (key, JSON) pairs to
        set and the keys to delete. TypeError, naming the key, for a value JSON cannot hold
        (one changed in place after it was handed out)."""
        handed_out = self._handed_out
        if handed_out is None:  # every key but those never decoded, which are as loaded
            current = self._decoded_snapshot()
            unread = {json_key(key) for key, value in dict.items(self) if value is _UNDECODED}
            absent = (stored.keys() - unread) - current.keys()
        else:  # encode only what may have changed
            current = {}
            absent = set()
            for key in (self._written | handed_out) if handed_out else self._written:
                value = dict.get(self, key, _MISSING)
                if value is _MISSING:
                    absent.add(json_key(key))
                else:
                    current[json_key(key)] = self._storable(value)
        changed: list[tuple[str, str]] = []
        removed: list[str] = []
        for key, value in current.items():
            text = checked_json(key, value)
            if _loaded_text(stored, key) != text:
                changed.append((key, text))
        for key in absent:
            if key in stored:
                removed.append(key)
        return changed, removed

    def snapshot(self) -> dict[str, Any]:
        """The data as stored: a plain dict with JSON's keys and values (tracks nothing)."""
        self._decode_all()
        return self._decoded_snapshot()

    def texts(self) -> dict[str, str]:
        """Each key's JSON as it is to be stored (a value never read: as it was loaded);
        TypeError, naming the key, for a value JSON cannot hold."""
        texts: dict[str, str] = {}
        for key, value in dict.items(self):
            name = json_key(key)
            if value is _UNDECODED:
                loaded = _loaded_text(self._stored, key)
                if loaded is not None:
                    texts[name] = loaded
                    continue
                value = self._decode(key)  # a value that does not read: None, logged
            texts[name] = checked_json(name, self._storable(value))
        return texts

    def _decoded_snapshot(self) -> dict[str, Any]:
        return {
            json_key(key): self._storable(value)
            for key, value in dict.items(self)
            if value is not _UNDECODED
        }

    def _storable(self, value: Any) -> Any:
        """The value as JSON is to hold it (a subclass may tag types JSON lacks)."""
        return value

    def _loaded(self, value: Any, text: str) -> Any:
        """A stored value as the session gives it, from its decoded JSON and its text (a
        subclass may untag what `_storable` tagged)."""
        return value

    def _decode(self, key: Any) -> Any:
        """Decode the stored value of `key` in place. A value this package could not have
        written reads as None, with a warning, and the next write stores None over it."""
        try:
            text = self._stored[key]
            value = self._loaded(decode_value(text), text)
        except CorruptRecord as error:
            logger.warning(
                "a stored session value could not be read (%s); it reads as None: "
                "session %s, key %r",
                error, self.handle, key,
            )  # fmt: skip
            value = None
            self._written.add(key)
        dict.__setitem__(self, key, value)
        return value

    def _peek(self, key: Any, default: Any = None) -> Any:
        """The value of `key`, as get() gives it, without marking the session accessed or
        handing the value out."""
        value = dict.get(self, key, default)
        return self._decode(key) if value is _UNDECODED else value

    def _decoded(self) -> dict[str, Any]:
        """A plain copy of the data, every value decoded (tracks nothing)."""
        self._decode_all()
        return dict(dict.items(self))

    def _decode_all(self) -> None:
        if self._undecoded:
            for key in [key for key, value in dict.items(self) if value is _UNDECODED]:
                self._decode(key)
            self._undecoded = False

    def mark_accessed(self) -> None:
        """The response depends on the session (it varies with the Cookie header)."""
        self.accessed = True

    @property
    def may_have_changed(self) -> bool:
        """Changed, or a list or dict was handed out that may have been changed in place."""
        return self.modified or self._nested_out

    def _hand_out(self, key: Any) -> None:
        self._nested_out = True  # it may be changed in place: compared at the end
        handed_out = self._handed_out
        if handed_out is _NOTHING_HANDED_OUT:  # made at the first: most requests hand nothing out
            self._handed_out = {key}
        elif handed_out is not None:
            handed_out.add(key)

    def _hand_out_all(self) -> None:
        self._decode_all()
        self._compare_all()

    def _compare_all(self) -> None:
        """At the commit, compare every value read with what was loaded (any may have been
        changed in place); a value never read is as it was loaded."""
        self.accessed = self._nested_out = True
        self._handed_out = None

    # -- authentication ------------------------------------------------------------

    @property
    def user_id(self) -> UserId | None:
        """The logged-in user, or None when anonymous."""
        self.accessed = True
        return self._user_id

    def login(self, user_id: UserId) -> None:
        """Bind this session to ``user_id`` under a new session id.

        The old id is deleted (a session-fixation defence) and the session is stamped
        with the user's current epoch. Data is kept unless another user was logged in.
        """
        self._check_writable()
        user_id_text(user_id)
        if self._user_id is not None and self._user_id != user_id:
            self._clear_quietly()
        self._user_id = user_id
        self.intent = Intent("login", user_id)
        self.modified = True

    def logout(self) -> None:
        """End this session: its record is deleted and its cookie cleared."""
        self._check_writable()
        self._clear_quietly()
        self._user_id = None
        self.intent = Intent("logout")
        self.modified = True

    def logout_others(self) -> None:
        """End every other session of this user; this one stays logged in."""
        self._check_writable()
        if self._user_id is None:
            raise RuntimeError("logout_others() needs a logged-in session; call login() first")
        self.intent = replace(self.intent, end_others=True)
        self.modified = True

    def regenerate_id(self) -> None:
        """Move the session to a new id, keeping its data and its user; the old id ends.

        For a logged-in session this is ``login(user_id)`` again (a compare-and-set on its
        epoch: it is refused if the user was invalidated meanwhile)."""
        self._check_writable()
        if self._user_id is not None:
            self.login(self._user_id)
            return
        data = self._decoded()
        self.logout()
        for key, value in data.items():
            self[key] = value

    @property
    def pending_login(self) -> UserId | None:
        """The user a login is to bind the session to (None: no login asked)."""
        return self.intent.user_id if self.intent.action == "login" else None

    @property
    def ended(self) -> bool:
        """Whether a logout was asked."""
        return self.intent.action == "logout"

    def _clear_quietly(self) -> None:
        self._written.update(dict.keys(self))
        dict.clear(self)

    # -- driver side ----------------------------------------------------------------

    def adopt(self, data: Mapping[str, Any]) -> int:
        """Copy in what another session store held; returns how many values JSON could not
        hold (or that were too large) and were left out."""
        dropped = 0
        for key, value in data.items():
            try:
                self[key] = value
            except (TypeError, ValueError):
                dropped += 1
        return dropped

    def freeze(self, reason: str) -> None:
        """From now on, changing the session raises RuntimeError with ``reason``."""
        self._frozen = reason

    def _check_writable(self) -> None:
        if self._frozen is not None:
            raise RuntimeError(self._frozen)
