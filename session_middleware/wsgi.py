"""The WSGI driver: moves bytes between the WSGI server and the core, on sync redis."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import _fail_closed as unavailable
from ._core.lifecycle import Committed
from ._middleware import ConfiguredMiddleware
from ._request_cycle import client_of_environ, publish, response_headers
from ._request_session import REJECTED_KEY, SESSION_KEY


class WSGISessionMiddleware(ConfiguredMiddleware):
    """WSGI middleware putting the session in ``environ["session_middleware.session"]``."""

    interface = "wsgi"

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if self._excluded(environ.get("PATH_INFO", "")):
            passed: Iterable[bytes] = self.app(environ, start_response)
            return passed
        cycle = self._cycle
        opened = cycle.open(environ.get("HTTP_COOKIE"), client_of_environ(environ))
        if opened is None:
            start_response(unavailable.WSGI_STATUS, unavailable.HEADERS)
            return [unavailable.BODY]
        publish(opened, environ, SESSION_KEY, REJECTED_KEY)
        refused = started = False
        committed: Committed | None = None

        def start_with_session(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            nonlocal refused, started, committed
            started = True
            if committed is None and not refused:
                # Once: an app may call start_response again (with exc_info) to replace
                # the response by an error page; the session is not written twice.
                committed = cycle.commit(opened)
                refused = committed is None
            if committed is None:
                return start_response(unavailable.WSGI_STATUS, unavailable.HEADERS, exc_info)
            added = response_headers(committed, headers)
            if added:
                headers = [*headers, *added]
            return start_response(status, headers, exc_info)

        body: Iterable[bytes] = self.app(environ, start_with_session)
        if started and not refused:
            return body  # the common case: keeps the server's file_wrapper and the like
        return _Body(body, lambda: refused)


class _Body:
    """The app's body, replaced by the 503 text if the session could not be saved."""

    def __init__(self, body: Iterable[bytes], refused: Callable[[], bool]) -> None:
        self._body = body
        self._refused = refused

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            if self._refused():
                yield unavailable.BODY
                return
            yield chunk
        if self._refused():
            yield unavailable.BODY

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
