"""A Django app holding the custom user model of the tests (models.py)."""

from django.apps import AppConfig


class NativeTestsConfig(AppConfig):
    name = "tests.support.django_native"
    label = "django_native"
    default_auto_field = "django.db.models.AutoField"
