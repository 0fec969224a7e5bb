"""Django's SessionMiddleware, answering 503 when the session store cannot be reached,
keeping caches from storing a response that sets or clears the session cookie, and giving
every login the request's user agent and IP, as the ASGI and WSGI drivers do.

Optional: put ``"session_middleware.django.middleware.SessionMiddleware"`` in MIDDLEWARE
in place of Django's. With Django's own, a Redis outage reaches Django's 500 handling,
such responses carry only the cache headers the view gave them, and only a login through
django.contrib.auth's ``login()`` records the user agent and IP.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.sessions import middleware
from django.http import HttpResponse

from .. import _fail_closed as unavailable
from .._request_cycle import client_of_environ
from .._response_headers import session_headers
from ._settings import get_config
from .engine import SessionStore


class SessionMiddleware(middleware.SessionMiddleware):  # type: ignore[misc]
    """Django's SessionMiddleware on this package's engine: a login records the request's
    client, and a store that cannot vouch for the session is answered with the 503."""

    def process_request(self, request: Any) -> None:
        super().process_request(request)
        store = request.session
        if isinstance(store, SessionStore):  # a login records the request's client
            store.client_info = client_of_environ(request.META)

    def process_exception(self, request: Any, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, unavailable.FAILURES) and unavailable.answers_503(
            get_config().on_redis_error
        ):
            return _unavailable()
        return None

    def process_response(self, request: Any, response: Any) -> Any:
        try:
            response = super().process_response(request, response)
        except unavailable.FAILURES:
            if not unavailable.answers_503(get_config().on_redis_error):
                raise
            return _unavailable()
        cookie = response.cookies.get(settings.SESSION_COOKIE_NAME)
        if cookie is not None:
            # Vary: Cookie is Django's own doing (patch_vary_headers); Cache-Control is ours.
            for name, value in session_headers(response.items(), cookie.OutputString(), False):
                if name == "cache-control":
                    response[name] = value
        return response


def _unavailable() -> HttpResponse:
    response = HttpResponse(unavailable.BODY, status=unavailable.STATUS)
    for name, value in unavailable.headers_without_length():
        response[name] = value
    return response
