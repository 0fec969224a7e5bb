"""Concurrent users for the cluster and Sentinel tests under load: each one logs in to an
app of tests/load_app.py and then adds to its counter and reads its session in turn, as
asyncio tasks on the ASGI app or threads on the WSGI app; a Tally checks every answer."""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import httpx

from session_middleware import SessionConfig, sessions

from . import SECRET, new_prefix
from .stories import BASE
from .waiting import until

JSON = dict[str, Any]
Answer = tuple[int, JSON | None]
# One user's walk: it yields (method, path) and is sent the answer.
Walk = Generator[tuple[str, str], Answer, None]


@dataclass
class Tally:
    """Every answer the users got: statuses, and answers for another user than the one
    logged in (a session lost counts too), per user."""

    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    wrong_users: collections.Counter[str] = field(default_factory=collections.Counter)
    lost_writes: collections.Counter[str] = field(default_factory=collections.Counter)
    # Per user, the first answer that was not a 200 for them, and the one before it: where
    # a session was lost names the request that lost it.
    first_wrong: dict[str, str] = field(default_factory=dict)
    sign_ins: collections.Counter[str] = field(default_factory=collections.Counter)
    _last: dict[str, str] = field(default_factory=dict, repr=False)

    def failed(self, users: list[str] | None = None) -> int:
        """Answers other than 200, for `users` (everyone when None)."""
        return _total(self.failures, users)

    def lost(self, users: list[str] | None = None) -> int:
        """Writes acknowledged, then not seen by the next one, for `users`."""
        return _total(self.lost_writes, users)

    def walk(self, user: str, login_every: int = 0) -> Walk:
        """Log in until that works, then hit and read in turn (and log in again every
        `login_every` hits, when given); a counter that does not move by one, or a session
        of anyone else, is recorded."""
        count: int | None = None
        while True:
            if count is None or (login_every and count == login_every):
                status, body = yield "POST", f"/login?user={user}"
                if self._ok(user, status, body, "POST /login"):
                    self.sign_ins[user] += 1
                    count = 0
                continue
            status, body = yield "POST", "/hit"
            if self._ok(user, status, body, "POST /hit"):
                assert body is not None
                if body["count"] != count + 1:
                    self.lost_writes[user] += 1
                count = body["count"]
            status, body = yield "GET", "/me"
            self._ok(user, status, body, "GET /me")

    def _ok(self, user: str, status: int, body: JSON | None, request: str) -> bool:
        self.statuses[status] += 1
        answer = f"{request}: {status} {body}"
        before, self._last[user] = self._last.get(user), answer
        if status != 200:
            self.failures[user] += 1
        elif body is None or body.get("user") != user:
            self.wrong_users[user] += 1
        else:
            return True
        self.first_wrong.setdefault(user, f"{answer} (after {before})")
        return False


def _total(counts: collections.Counter[str], users: list[str] | None) -> int:
    return sum(n for user, n in counts.items() if users is None or user in users)


async def walk_async(app: Any, walk: Walk, stop: asyncio.Event | threading.Event) -> None:
    """Drive `walk` on the ASGI app until `stop` is set (a 500 is an answer, not a raise)."""
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        request = next(walk)
        while not stop.is_set():
            response = await client.request(*request)
            request = walk.send(_answer(response))
            await asyncio.sleep(0)


def walk_sync(app: Any, walk: Walk, stop: threading.Event) -> None:
    """Drive `walk` on the WSGI app until `stop` is set."""
    transport = httpx.WSGITransport(app, raise_app_exceptions=False)
    with httpx.Client(transport=transport, base_url=BASE) as client:
        request = next(walk)
        while not stop.is_set():
            request = walk.send(_answer(client.request(*request)))


def _answer(response: httpx.Response) -> Answer:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return response.status_code, None
    return response.status_code, response.json()


def load_config(
    redis_url: str | None = None, client: Any = None, redis_timeout: float = 1.0
) -> SessionConfig:
    """The configuration of these tests: its own key prefix, redis_timeout 1 s."""
    return sessions(
        secret_key=SECRET,
        redis_url=redis_url,
        redis=client,
        key_prefix=new_prefix(),
        redis_timeout=redis_timeout,
    )


def invalidate_all(config: SessionConfig, users: list[str]) -> list[asyncio.Future[None]]:
    """Invalidations of `users` started at once, every other one from a thread (the sync
    invalidate_user), the rest as tasks; each future holds None or what was raised."""
    return [
        asyncio.ensure_future(
            config.ainvalidate_user(user)
            if n % 2
            else asyncio.to_thread(config.invalidate_user, user)
        )
        for n, user in enumerate(users)
    ]


class Load:
    """Users walking at once: `async_users` as tasks on `asgi`, `sync_users` as threads on
    `wsgi`, until `stop()`; the tally is shared."""

    def __init__(
        self,
        asgi: Any,
        wsgi: Any,
        async_users: list[str],
        sync_users: list[str],
        login_every: int = 0,
    ) -> None:
        self.tally = Tally()
        self.users = [*async_users, *sync_users]
        self._stop = threading.Event()
        self._tasks = [
            asyncio.ensure_future(walk_async(asgi, self.tally.walk(u, login_every), self._stop))
            for u in async_users
        ]
        self._crashes: list[BaseException] = []
        self._threads = [
            threading.Thread(
                target=self._walk_sync,
                args=(wsgi, self.tally.walk(u, login_every)),
                daemon=True,  # a failed test does not hang on them
            )
            for u in sync_users
        ]
        for thread in self._threads:
            thread.start()

    def _walk_sync(self, app: Any, walk: Walk) -> None:
        try:
            walk_sync(app, walk, self._stop)
        except BaseException as error:  # reported by stop()
            self._crashes.append(error)

    async def signed_in(self, times: int = 1) -> None:
        """Until every user has signed in `times` times."""
        await until(
            lambda: all(self.tally.sign_ins[user] >= times for user in self.users),
            f"every user to sign in {times} times",
            seconds=30.0,
        )

    async def stop(self) -> Tally:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 30)
            assert not thread.is_alive()
        if self._crashes:
            raise self._crashes[0]
        return self.tally
