"""A user's devices ("where you're signed in"), ready to mount: what every framework's
endpoints share. The adapters are thin: ``session_middleware.devices.starlette`` (Starlette
and FastAPI), ``session_middleware.devices.flask`` and ``session_middleware.django.devices``.

Every adapter answers the same JSON:

- ``GET`` the list: ``{"sessions": [...]}``, each session as `SessionInfo.as_dict` gives it,
  plus ``"current": true`` for the session of the request;
- ``POST <handle>/revoke``: end one session of the user (404 when the handle is not one of
  theirs, so nobody can learn or end another user's sessions);
- ``POST others/revoke``: end every other session of the user; this one stays.

Anonymous requests get 401. A POST needs the framework's CSRF protection (Django's, or
Flask-WTF's CSRFProtect when the app has it) or else proof that the browser sent it from
the same origin (see `same_origin`); without it, 403.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._configuration import Configuration
from .._core.user_sessions import SessionInfo
from .._device_label import UNKNOWN_DEVICE, device_label
from ..session import Session

__all__ = [
    "ANONYMOUS",
    "CROSS_SITE",
    "NOT_YOURS",
    "NO_STORE",
    "UNAVAILABLE",
    "UNKNOWN_DEVICE",
    "Refusal",
    "device_label",
    "end_if_current",
    "listing",
    "same_origin",
    "unavailable",
]

logger = logging.getLogger("session_middleware")


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer other than success: its status and its JSON body."""

    status: int
    error: str
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, str]:
        return {"error": self.error}


# A user's devices and addresses: no cache may keep them.
NO_STORE = {"cache-control": "no-store"}
ANONYMOUS = Refusal(401, "not logged in")
CROSS_SITE = Refusal(403, "not sent from this site: the same-origin or CSRF check failed")
NOT_YOURS = Refusal(404, "no such session")
UNAVAILABLE = Refusal(
    503,
    "the session store cannot be reached; please retry shortly",
    {"retry-after": "5", **NO_STORE},
)


def listing(infos: Sequence[SessionInfo], current_handle: str | None) -> dict[str, Any]:
    """The JSON of the list: each session, the request's own marked ``current``."""
    return {
        "sessions": [{**info.as_dict(), "current": info.handle == current_handle} for info in infos]
    }


def same_origin(
    *,
    fetch_site: str | None,
    origin: str | None,
    own_origin: str,
    trusted_origins: Collection[str] = (),
) -> bool:
    """Whether a state-changing request came from a page of this site.

    A browser's ``Sec-Fetch-Site`` header decides when present: only ``same-origin``
    passes. Without it, the ``Origin`` header must be this site's own origin (scheme, host
    and port) or one of `trusted_origins`. A request with neither header is refused: a
    script or tool calling the endpoint sends ``Origin`` itself.
    """
    if fetch_site is not None:
        return fetch_site.strip().lower() == "same-origin"
    if origin is None or origin.strip().lower() == "null":
        return False
    wanted = origin.strip().rstrip("/").lower()
    return wanted == own_origin.rstrip("/").lower() or wanted in {
        trusted.rstrip("/").lower() for trusted in trusted_origins
    }


def unavailable(config: Configuration, error: Exception) -> Refusal:
    """The answer when the session store failed while listing or revoking: the 503, or
    `error` raised again for the app's own handling (``on_redis_error="raise"``)."""
    if config.on_redis_error != "503":
        raise error
    logger.warning("devices endpoint: the session store failed: %s", type(error).__name__)
    return UNAVAILABLE


def end_if_current(session: Session, handle: str) -> bool:
    """Revoking the request's own session logs it out (its cookie is cleared too); True if
    `handle` is that session."""
    if session.handle is None or handle != session.handle:
        return False
    session.logout()
    return True
