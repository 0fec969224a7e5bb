"""Django integration.

``SESSION_ENGINE = "session_middleware.django"`` makes ``request.session`` a session kept
in Redis and checked against the user's epoch; ``SESSION_MIDDLEWARE`` configures it (see
_settings.py). Listing ``"session_middleware.django"`` in INSTALLED_APPS too makes password
changes end the user's other sessions wherever they happen. ``get_session(request)`` is
``request.session`` loaded and typed as this package's SessionStore.
"""

from ._access import aget_session, get_session
from .auth import ainvalidate_user, invalidate_user, user_id_of
from .engine import SessionStore

__all__ = [
    "SessionStore",
    "aget_session",
    "ainvalidate_user",
    "get_session",
    "invalidate_user",
    "user_id_of",
]
