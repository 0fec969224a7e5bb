from django.urls import include, path

from session_middleware.django import devices

from . import views
from .session_config import config

urlpatterns = [
    path("", views.home),
    path("login", views.login),
    path("logout", views.logout),
    path("forgot", views.forgot),
    path("reset", views.reset),
    # The package's devices endpoints: list the user's sessions, revoke one, the others.
    path("account/sessions/", include(devices.urls(config))),
]
