from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # A signed-in user's own devices page (the package's views and template).
    path("account/sessions/", include("session_middleware.django.devices")),
]
