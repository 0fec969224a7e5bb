"""Lifecycle events, for audit logs and metrics.

The core records what happened to a session as SessionEvent values (it does no I/O); the
configuration hands them to every listener once the step that made them has run. A
listener that raises is logged and skipped: an audit hook never fails a request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

logger = logging.getLogger("session_middleware")

EventKind = Literal[
    "login",  # a session was bound to a user (a new session id)
    "rotation",  # a logged-in session moved to a new id (login() again, regenerate_id())
    "logout",  # a logged-in session was ended by logout()
    "logout_others",  # the user's other sessions were ended from this one
    "rejected",  # a session was refused; reason: epoch, expired, corrupt, unavailable or
    # unreplicated (its own epoch change could not be made durable, so it ended)
    "invalidate",  # invalidate_user(): every session of the user ended
    "revoke",  # revoke_session(): one session ended
    "evicted",  # a session ended by max_sessions_per_user at another login
    "expired",  # a session's record expired in Redis (config.listen_for_expiry())
]
Reason = Literal["epoch", "expired", "corrupt", "unavailable", "unreplicated"]


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """Something that happened to a session. `handle` is the session's public handle (as
    list_sessions shows it, never something that becomes a cookie); `user_id` is None for
    an anonymous session or when the user is unknown (a corrupt record, an outage).
    `error`, on a session rejected as "unavailable", is the StoreUnavailable raised (the
    store's own error is its ``__cause__``)."""

    kind: EventKind
    user_id: Any = None
    handle: str | None = None
    reason: Reason | None = None
    error: BaseException | None = field(default=None, compare=False)


Listener = Callable[[SessionEvent], None]


class Listeners:
    """The configuration's listeners: called in order, each on its own. `on_unavailable`
    hears every session rejected as "unavailable" first (the configuration's log line)."""

    def __init__(self, on_unavailable: Listener | None = None) -> None:
        self._listeners: list[Listener] = []
        self._on_unavailable = on_unavailable

    def add(self, listener: Listener) -> Listener:
        """Call `listener` with every event from now on; returns it (usable as a decorator)."""
        self._listeners.append(listener)
        return listener

    def remove(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def emit(self, events: Iterable[SessionEvent]) -> None:
        for event in events:
            if event.kind == "rejected":
                _log_rejection(event, self._on_unavailable)
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    logger.exception("a session event listener failed on a %s event", event.kind)


def _log_rejection(event: SessionEvent, on_unavailable: Listener | None) -> None:
    if event.reason == "unavailable":
        if on_unavailable is not None:
            on_unavailable(event)
    elif logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "session %s refused: %s (user %r)",
            event.handle,
            _WHY.get(event.reason or "", event.reason),
            event.user_id,
        )


_WHY = {
    "epoch": "the user's epoch moved (logged out everywhere, or invalidated)",
    "expired": "expired",
    "corrupt": "its record is not one this package writes",
}


__all__ = ["EventKind", "Listener", "Listeners", "Reason", "SessionEvent"]
