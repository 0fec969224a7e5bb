"""django.contrib.auth and the user's epoch.

Saving a user whose password was set with ``set_password()`` bumps their epoch once the
transaction commits: every session of that user ends, on every worker. The request that
changed the password keeps its session: its bump is a compare-and-set from the epoch the
session carries, and the session is re-stamped with the new epoch
(``update_session_auth_hash()`` rotates its key) only while that epoch is still the
user's. When the user's sessions were ended while the request was in flight, the compare
fails: the bump is still made, so every other session ends, and this one ends too. A
session never adopts an epoch that another request set. A rehash
Django makes on its own (a hasher upgrade at login) does not go through
``set_password()`` + ``save()`` and ends nothing.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.db.models.signals import post_save

from .._protocol.key_layout import UserId
from .._request_cycle import client_of_environ
from ._settings import SETTING, get_config
from .engine import SessionStore, current_store

ENGINE = "session_middleware.django"


def user_id_of(user: Any) -> UserId:
    """The id a session is bound to: the text Django's login() stores for the user."""
    if isinstance(user, (str, int)) and not isinstance(user, bool):
        return user
    meta = getattr(user, "_meta", None)
    if meta is None:
        return str(user)
    return str(meta.pk.value_to_string(user))


def invalidate_user(user: Any) -> None:
    """End every session of ``user`` (a user or its primary key) from now on."""
    get_config().invalidate_user(user_id_of(user))


async def ainvalidate_user(user: Any) -> None:
    """The async twin of invalidate_user."""
    await get_config().ainvalidate_user(user_id_of(user))


def password_changed(
    sender: Any, instance: Any, raw: bool = False, using: str | None = None, **kwargs: Any
) -> None:
    """post_save receiver: a user saved after set_password() loses every session."""
    if raw or getattr(instance, "_password", None) is None or not _in_use():
        return
    from django.contrib.auth.base_user import AbstractBaseUser

    if not isinstance(instance, AbstractBaseUser):
        return
    user_id = user_id_of(instance)
    transaction.on_commit(lambda: _bump(user_id), using=using)


def _bump(user_id: UserId) -> None:
    store = current_store()
    if store is not None:
        store.password_changed(user_id)  # this device keeps its session, if still valid
        return
    config = get_config()
    config.run_sync(config.epochs.bump_epoch(user_id))


def remember_device(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """user_logged_in receiver: the user agent and IP that list_sessions shows, as the
    request's ``META`` holds them once the middleware before the view has run."""
    session = getattr(request, "session", None)
    if isinstance(session, SessionStore):
        session.client_info = client_of_environ(request.META)


def _in_use() -> bool:
    return getattr(settings, SETTING, None) is not None or settings.SESSION_ENGINE == ENGINE


post_save.connect(password_changed, dispatch_uid="session_middleware.django.password_changed")
user_logged_in.connect(remember_device, dispatch_uid="session_middleware.django.remember_device")
