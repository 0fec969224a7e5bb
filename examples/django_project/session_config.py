"""The project's one session configuration, shared by asgi.py and the views."""

from demo.environment import session_settings

from session_middleware import sessions

config = sessions(**session_settings())
