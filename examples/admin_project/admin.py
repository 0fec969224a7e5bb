"""Django's user admin with each user's sessions on their change page."""

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User

from session_middleware.django.admin import UserSessionsAdminMixin

admin.site.unregister(User)


def folded(name: Any, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    return name, {**options, "classes": ("collapse",)}


@admin.register(User)
class SessionsUserAdmin(UserSessionsAdminMixin, UserAdmin):  # type: ignore[misc]
    # The long permissions section starts folded, so the sessions show without scrolling.
    fieldsets = tuple(
        folded(name, options) if str(name) == "Permissions" else (name, options)
        for name, options in UserAdmin.fieldsets or ()
    )
