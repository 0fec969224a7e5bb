"""Settings for Django's own runtests.py (its tests/test_sqlite.py, plus our engine).

runtests.py replaces INSTALLED_APPS, MIDDLEWARE, TEMPLATES and a few others with its own;
what is set here survives: USE_TZ (SM_COMPAT_USE_TZ), the session engine, its
SESSION_MIDDLEWARE settings (the run's own key prefix, so the harness deletes exactly
these keys afterwards) and the recording test runner, whose results the harness reads.
"""

import os

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3"},
    "other": {"ENGINE": "django.db.backends.sqlite3"},
}
SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = os.environ.get("SM_COMPAT_USE_TZ") == "True"

SESSION_ENGINE = "session_middleware.django"
SESSION_MIDDLEWARE = {
    "secret_key": "compat-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
    "redis_url": os.environ.get("SM_COMPAT_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "key_prefix": os.environ.get("SM_COMPAT_PREFIX", "smcompat:django:adhoc:"),
}
TEST_RUNNER = "sm_compat_django_runner.RecordingRunner"
