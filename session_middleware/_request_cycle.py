"""One request's session, from its cookie to its response headers: the cycle the
integrations run, written once.

The ASGI and WSGI drivers and the Flask integration map their framework's request and
response onto these calls, and do nothing else with the core. Django's engine is driven by
Django's SessionMiddleware, which loads a session at its first use and saves it only when
it changed: it runs the core's open and commit inside its own steps, and takes the login
key and the request's client from here.

- `RequestCycle.open` (`aopen`) when the request arrives: the core's open step, run on the
  sync (async) Redis client, with the request's user agent and IP (`client_of_environ`,
  `client_of_scope`) at hand for a login;
- `publish`: where the app finds the session, and why a stored one was rejected;
- `RequestCycle.commit` (`acommit`) when the response starts: the session is frozen, so
  that a change made too late raises instead of being lost, and the core's commit step
  runs;
- `response_headers`: what the response gains (Set-Cookie, Cache-Control, Vary);
- `follow_login_key`: the session bound to the user an auth library names in it
  (Flask-Login's ``_user_id``, django.contrib.auth's ``_auth_user_id``).

Fail closed is applied here: when the store cannot vouch for a session, `open` and `commit`
return None and the integration answers with its 503 (see _fail_closed.py), unless
``on_redis_error="raise"``, when the error reaches the app.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Collection, Iterable, Mapping, MutableMapping
from typing import Any, Protocol, TypeVar

from . import _fail_closed as unavailable
from ._core.lifecycle import ClientInfo, Committed, Core, Opened
from ._core.steps import Step
from ._protocol.key_layout import user_id_text
from ._response_headers import session_headers
from .session import Session

T = TypeVar("T")

STARTED = "the response has started: session changes can no longer be saved"


class StepRunner(Protocol):
    """Runs the core's steps on the configured Redis (a SessionConfig)."""

    def run_sync(self, step: Step[T]) -> T: ...

    def run_async(self, step: Step[T]) -> Awaitable[T]: ...


class Configured(StepRunner, Protocol):
    """A SessionConfig, as the request cycle uses it."""

    @property
    def core(self) -> Core: ...

    @property
    def on_redis_error(self) -> Any: ...


class RequestCycle:
    """Opens and commits requests' sessions with one core, on either Redis face.

    fails_closed: a failure of the store is answered with the 503 (the integration is told
        by a None); False (``on_redis_error="raise"``) lets the error through to the app.

    Each method hands its step to the runner itself, with no helper between: a write holds
    its whole stack of frames alive while it awaits Redis, and each frame is one more
    object for Python's garbage collector to count (see docs/performance.md).
    """

    __slots__ = ("_runner", "core", "fails_closed")

    def __init__(self, core: Core, runner: StepRunner, *, fails_closed: bool) -> None:
        self.core = core
        self._runner = runner
        self.fails_closed = fails_closed

    @classmethod
    def of(cls, config: Configured, core: Core | None = None) -> RequestCycle:
        """The cycle of a configuration: its core (or `core`, the same with other
        lifetimes), and its ``on_redis_error``."""
        return cls(
            config.core if core is None else core,
            config,
            fails_closed=unavailable.answers_503(config.on_redis_error),
        )

    def open(
        self, cookie_header: str | None, client: ClientInfo | None, now: float | None = None
    ) -> Opened | None:
        """The request's session as of `now`; None when the store cannot vouch for it. A
        request with no session cookie of ours has nothing to read: its new session is
        made at once, without running the core's open step (as `Core.settled` spares a
        commit with nothing to write)."""
        ref = self.core.codec.find(cookie_header)
        if ref is None:
            return self.core.fresh(client)
        now = time.time() if now is None else now
        try:
            return self._runner.run_sync(self.core.open(cookie_header, now, client, ref))
        except unavailable.FAILURES as error:
            self._raise_unless_closed(error)
        return None

    async def aopen(
        self, cookie_header: str | None, client: ClientInfo | None, now: float | None = None
    ) -> Opened | None:
        ref = self.core.codec.find(cookie_header)
        if ref is None:
            return self.core.fresh(client)
        now = time.time() if now is None else now
        try:
            return await self._runner.run_async(self.core.open(cookie_header, now, client, ref))
        except unavailable.FAILURES as error:
            self._raise_unless_closed(error)
        return None

    def commit(
        self, opened: Opened, frozen: str | None = STARTED, now: float | None = None
    ) -> Committed | None:
        """Save what the request did to its session as of `now` (most reads save nothing,
        with no round trip); None when the store could not. Changing the session afterwards
        raises RuntimeError with `frozen` (None leaves it open: such changes are lost)."""
        if frozen is not None:
            opened.session.freeze(frozen)
        now = time.time() if now is None else now
        settled = self.core.settled(opened, now)
        if settled is not None:
            return settled
        try:
            return self._runner.run_sync(self.core.commit(opened, now, unsettled=True))
        except unavailable.FAILURES as error:
            self._raise_unless_closed(error)
        return None

    async def acommit(
        self, opened: Opened, frozen: str | None = STARTED, now: float | None = None
    ) -> Committed | None:
        if frozen is not None:
            opened.session.freeze(frozen)
        now = time.time() if now is None else now
        settled = self.core.settled(opened, now)
        if settled is not None:
            return settled
        try:
            return await self._runner.run_async(self.core.commit(opened, now, unsettled=True))
        except unavailable.FAILURES as error:
            self._raise_unless_closed(error)
        return None

    def _raise_unless_closed(self, error: Exception) -> None:
        """The store failed a step: the error reaches the app unless the cycle fails closed
        (its methods then return None, the integration's 503)."""
        if not self.fails_closed:
            raise error


def publish(
    opened: Opened, holder: MutableMapping[str, Any], session_key: str, rejected_key: str
) -> None:
    """Put the session where the app reads it (an ASGI scope, a WSGI environ), and why a
    stored session was refused ("epoch"), if it was."""
    holder[session_key] = opened.session
    if opened.rejected is not None:
        holder[rejected_key] = opened.rejected


def response_headers(
    committed: Committed, existing: Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]]
) -> list[tuple[str, str]]:
    """The headers the response gains from its session, beside the `existing` ones."""
    return session_headers(existing, committed.set_cookie, committed.depends_on_session)


class client_of_environ:
    """The user agent and IP of a WSGI request (or of Django's ``request.META``), read when
    a login records them. Called as a function; a class, so that a request holds one object
    for it, not a closure (see RequestCycle)."""

    __slots__ = ("environ",)

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self.environ = environ

    def __call__(self) -> tuple[str | None, str | None]:
        return self.environ.get("HTTP_USER_AGENT"), self.environ.get("REMOTE_ADDR")


class client_of_scope:
    """The user agent and IP of an ASGI request, read when a login records them (one object,
    as client_of_environ)."""

    __slots__ = ("scope",)

    def __init__(self, scope: Mapping[str, Any]) -> None:
        self.scope = scope

    def __call__(self) -> tuple[str | None, str | None]:
        agents = [value for name, value in self.scope["headers"] if name == b"user-agent"]
        address = self.scope.get("client")
        user_agent = agents[0].decode("latin-1") if agents else None
        return user_agent, (address[0] if address else None)


def follow_login_key(
    session: Session, key: str, *, bound_by_key: bool = False, ignored: Collection[str] = ()
) -> None:
    """Bind `session` to the user an auth library names under `key`. Set to a user other
    than the session's, it logs in (a new session id), keeping the data the session held.
    Removed from a session it bound (`bound_by_key`: the key was there when it was loaded),
    the logged-in session ends and what else it held, beyond the `ignored` keys, moves into
    a new anonymous one."""
    value = session._peek(key)
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        bound = session.pending_login if session.pending_login is not None else session.user_id
        if bound is None or user_id_text(bound) != user_id_text(value):
            data = session._decoded()
            session.login(value)
            if not dict.__len__(session):  # login() empties a session that changes hands
                session.update(data)
    elif bound_by_key and session.user_id is not None and not session.ended:
        remaining = session._decoded()
        session.logout()
        if remaining.keys() - set(ignored):  # a session holding nothing else ends
            session.update(remaining)
