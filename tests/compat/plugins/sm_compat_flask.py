"""pytest plugin for Flask's and Flask-Login's own tests (loaded with -p).

Every Flask app the tests create (through the `app` fixture or `Flask(__name__)` in the
test body) gets this package's session interface, as a user's app would with
``init_app(app, sessions(redis_url=...))``: one configuration for every app, each app's
cookie signed with its own ``app.secret_key``. Everything else is upstream's: app config,
test client, pytest settings (filterwarnings = error included).
"""

from __future__ import annotations

import functools

import pytest
from sm_compat_common import PREFIX, REDIS_URL, isolate_key_prefix

_config = None


def _session_config():  # type: ignore[no-untyped-def]
    global _config
    if _config is None:
        from session_middleware import sessions

        _config = sessions(redis_url=REDIS_URL, key_prefix=PREFIX)
    return _config


def pytest_configure(config: pytest.Config) -> None:
    isolate_key_prefix()
    import flask

    from session_middleware.flask import init_app

    original = flask.Flask.__init__

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        init_app(self, _session_config())

    flask.Flask.__init__ = __init__  # type: ignore[method-assign]
