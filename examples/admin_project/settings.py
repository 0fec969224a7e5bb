"""Django settings: the admin, auth, and session_middleware's engine over Redis."""

import os

from demo.environment import DEFAULT_REDIS_URL, secret_key

SECRET_KEY = secret_key()
DEBUG = True  # the development server then serves the admin's static files
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
INSTALLED_APPS = [
    "session_middleware.django",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "admin_project",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "session_middleware.django.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "admin_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ADMIN_PROJECT_DATABASE", "admin_project.sqlite3"),
    }
}
SESSION_ENGINE = "session_middleware.django"
SESSION_MIDDLEWARE = {
    "redis_url": os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
    "key_prefix": os.environ.get("SESSION_KEY_PREFIX", "admin-example:"),
}
STATIC_URL = "static/"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
