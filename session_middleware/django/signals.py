"""Django signals for the session lifecycle.

``session_event`` is sent for every SessionEvent of the engine's configuration (login,
rotation, logout, log-out-others, rejected with its reason, invalidate, revoke, evicted),
with ``sender=SessionStore`` and ``event=``. django.contrib.auth's own ``user_logged_in``
and ``user_logged_out`` still fire as usual; this signal adds what auth cannot see: a
session refused because its user's epoch moved, invalidations and revocations made from
anywhere, sessions ended by the per-user cap, and, with ``listen_for_expiry()`` running
on the configuration, sessions whose record expired in Redis (docs/expiry-events.md).

    from django.dispatch import receiver
    from session_middleware.django.signals import session_event

    @receiver(session_event)
    def audit(sender, event, **kwargs):
        audit_log.info("session %s", event.kind, extra={"user": event.user_id})
"""

from __future__ import annotations

from django.dispatch import Signal

from ..events import SessionEvent

session_event = Signal()


def send(event: SessionEvent) -> None:
    from .engine import SessionStore

    session_event.send(sender=SessionStore, event=event)


__all__ = ["send", "session_event"]
