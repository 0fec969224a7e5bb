"""A Django app holding the custom user model of the tests (django_native_models)."""

from django.apps import AppConfig


class NativeTestsConfig(AppConfig):
    name = "tests.django_native_app"
    label = "django_native"
    default_auto_field = "django.db.models.AutoField"
