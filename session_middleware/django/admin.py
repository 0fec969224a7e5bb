"""A user's sessions in Django's admin, for the user admin you opt into.

UserSessionsAdminMixin adds a read-only "Sessions" section to a user's change page (device
label with the user agent as its tooltip, IP, created, last seen) with a button to end each
session and one to end them all (invalidate_user). Nothing is registered here: mix it into
your own user admin::

    from django.contrib import admin
    from django.contrib.auth.admin import UserAdmin
    from django.contrib.auth.models import User
    from session_middleware.django.admin import UserSessionsAdminMixin

    admin.site.unregister(User)

    @admin.register(User)
    class SessionsUserAdmin(UserSessionsAdminMixin, UserAdmin):
        pass

The buttons post the change form (with its CSRF token) to views behind the admin's own
login, answered only to a POST by staff with the change permission on that user.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from .._core.user_sessions import SessionInfo
from ..errors import StoreUnavailable
from ._settings import get_config
from .auth import user_id_of

SECTION = "Sessions"
FIELD = "sessions_listing"  # the CSS below hides its label, which would repeat SECTION
STYLESHEET = "session_middleware/admin.css"
UNAVAILABLE = "The sessions cannot be listed now: the session store is unavailable."
REVOKED = "The session was ended."
NOT_FOUND = "That session had already ended."
ENDED_ALL = "Every session of this user was ended."
NOT_DONE = "The session store did not answer: try again (doing it twice is safe)."


class UserSessionsAdminMixin:
    """Shows a user's sessions on their change page, with revoke and "end all" buttons."""

    @property
    def media(self) -> forms.Media:
        return super().media + forms.Media(css={"all": [STYLESHEET]})  # type: ignore[misc]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        return fields if obj is None else (*fields, FIELD)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))  # type: ignore[misc]
        return fieldsets if obj is None else [*fieldsets, (SECTION, {"fields": (FIELD,)})]

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view  # type: ignore[attr-defined]
        name = self._url_name
        return [
            path(
                "<path:object_id>/sessions/end-all/",
                view(require_POST(self.end_all_sessions_view)),
                name=name("end_all"),
            ),
            path(
                "<path:object_id>/sessions/<str:handle>/revoke/",
                view(require_POST(self.revoke_session_view)),
                name=name("revoke"),
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]

    @staticmethod
    def _listing_row(info: SessionInfo, revoke_url: str) -> tuple[str, ...]:
        return (
            info.user_agent or "",
            info.device,
            info.ip or "-",
            info.created_at.strftime("%Y-%m-%d %H:%M UTC"),
            info.last_seen.strftime("%Y-%m-%d %H:%M UTC"),
            revoke_url,
        )

    def sessions_listing(self, obj: Any) -> Any:
        """The user's sessions as HTML (a SafeString: every value in it is escaped)."""
        try:
            listed = get_config().list_sessions(user_id_of(obj))
        except StoreUnavailable:
            return UNAVAILABLE
        if not listed:
            return "No active sessions."
        rows = format_html_join(
            "",
            '<tr><td title="{}">{}</td><td>{}</td><td>{}</td><td>{}</td><td><button type="submit" '
            'formaction="{}" formmethod="post" formnovalidate>Revoke</button></td></tr>',
            (self._listing_row(info, self._action_url(obj, info.handle)) for info in listed),
        )
        return format_html(
            "<table><thead><tr><th>Device</th><th>IP</th><th>Created</th><th>Last seen</th>"
            "<th></th></tr></thead><tbody>{}</tbody></table>"
            '<p><button type="submit" formaction="{}" formmethod="post" formnovalidate>'
            "End all sessions</button></p>",
            rows,
            self._action_url(obj, None),
        )

    sessions_listing.short_description = SECTION  # type: ignore[attr-defined]

    def revoke_session_view(self, request: HttpRequest, object_id: str, handle: str) -> Any:
        user = self._changeable_user(request, object_id)
        try:
            ended = get_config().revoke_session(user_id_of(user), handle)
        except StoreUnavailable:
            self._say(request, NOT_DONE, messages.ERROR)
        else:
            self._say(request, REVOKED if ended else NOT_FOUND, messages.SUCCESS)
        return self._back_to(user)

    def end_all_sessions_view(self, request: HttpRequest, object_id: str) -> Any:
        user = self._changeable_user(request, object_id)
        try:
            get_config().invalidate_user(user_id_of(user))
        except StoreUnavailable:  # InvalidationUncertain too: ending them again is safe
            self._say(request, NOT_DONE, messages.ERROR)
        else:
            self._say(request, ENDED_ALL, messages.SUCCESS)
        return self._back_to(user)

    def _say(self, request: HttpRequest, text: str, level: int) -> None:
        self.message_user(request, text, level)  # type: ignore[attr-defined]

    def _changeable_user(self, request: HttpRequest, object_id: str) -> Any:
        user = self.get_object(request, object_id)  # type: ignore[attr-defined]
        if user is None:
            raise Http404("no such user")
        if not self.has_change_permission(request, user):  # type: ignore[attr-defined]
            raise PermissionDenied
        return user

    def _url_name(self, action: str) -> str:
        meta = self.model._meta  # type: ignore[attr-defined]
        return f"{meta.app_label}_{meta.model_name}_sessions_{action}"

    def _action_url(self, user: Any, handle: str | None) -> str:
        namespace = self.admin_site.name  # type: ignore[attr-defined]
        if handle is None:
            return str(reverse(f"{namespace}:{self._url_name('end_all')}", args=[user.pk]))
        return str(reverse(f"{namespace}:{self._url_name('revoke')}", args=[user.pk, handle]))

    def _back_to(self, user: Any) -> HttpResponse:
        meta = self.model._meta  # type: ignore[attr-defined]
        namespace = self.admin_site.name  # type: ignore[attr-defined]
        change = f"{namespace}:{meta.app_label}_{meta.model_name}_change"
        return HttpResponseRedirect(reverse(change, args=[user.pk]))


__all__ = ["UserSessionsAdminMixin"]
