"""Django's SessionMiddleware, answering 503 when the session store cannot be reached.

Optional: put ``"session_middleware.django.middleware.SessionMiddleware"`` in MIDDLEWARE
in place of Django's. With Django's own, a Redis outage reaches Django's 500 handling.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions import middleware
from django.http import HttpResponse

from .. import unavailable
from ..clients import REDIS_ERRORS
from .conf import get_config


class SessionMiddleware(middleware.SessionMiddleware):  # type: ignore[misc]
    def process_exception(self, request: Any, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, REDIS_ERRORS) and get_config().on_redis_error == "503":
            return _unavailable()
        return None

    def process_response(self, request: Any, response: Any) -> Any:
        try:
            return super().process_response(request, response)
        except REDIS_ERRORS:
            if get_config().on_redis_error != "503":
                raise
            return _unavailable()


def _unavailable() -> HttpResponse:
    response = HttpResponse(unavailable.BODY, status=unavailable.STATUS)
    for name, value in unavailable.HEADERS:
        if name != "content-length":
            response[name] = value
    return response
