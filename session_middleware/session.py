"""The Session mapping that handlers see. It never does I/O.

``login``, ``logout`` and ``logout_others`` record an intent; the driver carries it out
when the response starts, the same way under ASGI and WSGI.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from .keys import UserId, user_id_text
from .records import check_json_value, checked_json


class Session(MutableMapping[str, Any]):
    """A mutable mapping of JSON values, bound to at most one user."""

    __slots__ = (
        "_data",
        "_frozen",
        "_handed_out",
        "_user_id",
        "_written",
        "accessed",
        "ended",
        "handle",
        "logout_others_requested",
        "max_value_bytes",
        "modified",
        "observed",
        "pending_login",
    )

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        user_id: UserId | None = None,
        *,
        max_value_bytes: int | None = None,
    ) -> None:
        self._data: dict[str, Any] = data if data is not None else {}
        self.max_value_bytes = max_value_bytes
        self._user_id = user_id
        self._frozen: str | None = None
        self._written: set[str] = set()  # keys assigned or deleted
        self._handed_out: set[str] | None = set()  # keys whose list or dict was handed out
        self.accessed = False  # a list or dict was handed out: it may be changed in place
        self.observed = False  # anything was read: the response depends on the session
        self.modified = False
        self.pending_login: UserId | None = None
        self.ended = False
        self.logout_others_requested = False
        #: The public handle of this stored session (see list_sessions); None until stored.
        self.handle: str | None = None

    # -- the mapping -------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self.observed = True
        value = self._data[key]
        if isinstance(value, (list, dict)):
            self.accessed = True  # it may be changed in place: compared at the end
            if self._handed_out is not None:
                self._handed_out.add(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._check_writable()
        check_json_value(key, value, self.max_value_bytes)
        self._data[key] = value
        self._written.add(key)
        self.modified = True

    def __delitem__(self, key: str) -> None:
        self._check_writable()
        del self._data[key]
        self._written.add(key)
        self.modified = True

    def __iter__(self) -> Iterator[str]:
        self.observed = True
        return iter(self._data)

    def __len__(self) -> int:
        self.observed = True
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        self.observed = True
        return key in self._data

    def __repr__(self) -> str:
        return f"<Session user_id={self._user_id!r} keys={sorted(self._data)!r}>"

    def clear(self) -> None:
        self._check_writable()
        if self._data:
            self._written.update(self._data)
            self._data.clear()
            self.modified = True

    def mark_modified(self) -> None:
        """Force a write-back, e.g. after changing a nested value in place."""
        self._check_writable()
        self._handed_out = None  # compare every key with what was loaded
        self.modified = True

    @property
    def data(self) -> dict[str, Any]:
        """The underlying dict (read it; assign through the session so values are checked)."""
        self.accessed = self.observed = True
        self._handed_out = None  # all of it
        return self._data

    def touched(self) -> set[str] | None:
        """The keys that may differ from what was loaded (None: any of them)."""
        if self._handed_out is None:
            return None
        return self._written | self._handed_out

    def changes(self, stored: Mapping[str, str]) -> tuple[list[tuple[str, str]], list[str]]:
        """What differs from `stored` (each key's JSON as loaded): the (key, JSON) pairs to
        set and the keys to delete. TypeError, naming the key, for a value JSON cannot hold
        (one changed in place after it was handed out)."""
        touched = self.touched()
        keys = self._data.keys() | stored.keys() if touched is None else touched
        changed: list[tuple[str, str]] = []
        removed: list[str] = []
        for key in keys:
            if key in self._data:
                text = checked_json(key, self._data[key])
                if stored.get(key) != text:
                    changed.append((key, text))
            elif key in stored:
                removed.append(key)
        return changed, removed

    # -- authentication ------------------------------------------------------------

    @property
    def user_id(self) -> UserId | None:
        """The logged-in user, or None when anonymous."""
        self.observed = True
        return self._user_id

    def login(self, user_id: UserId) -> None:
        """Bind this session to ``user_id`` under a new session id.

        The old id is deleted (a session-fixation defence) and the session is stamped
        with the user's current epoch. Data is kept unless another user was logged in.
        """
        self._check_writable()
        user_id_text(user_id)
        if self._user_id is not None and self._user_id != user_id:
            self._written.update(self._data)
            self._data.clear()
        self._user_id = user_id
        self.pending_login = user_id
        self.logout_others_requested = False
        self.modified = True

    def logout(self) -> None:
        """End this session: its record is deleted and its cookie cleared."""
        self._check_writable()
        self._written.update(self._data)
        self._data.clear()
        self._user_id = None
        self.pending_login = None
        self.logout_others_requested = False
        self.ended = True
        self.modified = True

    def logout_others(self) -> None:
        """End every other session of this user; this one stays logged in."""
        self._check_writable()
        if self._user_id is None:
            raise RuntimeError("logout_others() needs a logged-in session; call login() first")
        self.logout_others_requested = True
        self.modified = True

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
