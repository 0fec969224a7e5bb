"""The ASGI entry point: Django's application wrapped by the session configuration."""

import os

from django.core.asgi import get_asgi_application

from .session_config import config

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_project.settings")

application = config(get_asgi_application())
