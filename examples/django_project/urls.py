from django.urls import path

from . import views

urlpatterns = [
    path("", views.home),
    path("login", views.login),
    path("logout-others", views.logout_others),
    path("logout", views.logout),
    path("forgot", views.forgot),
    path("reset", views.reset),
    path("sessions/revoke", views.revoke),
]
