"""logout_others with SQL epochs, against a real Redis and every real database, with a
request of the same session (a second tab) placed after the database's compare-and-set
has committed, before each Redis round trip that follows it.

The Redis copy of the new epoch and the asking session's new stamp are written by one
script, so no read finds the copy new and the stamp old: the second tab is served, and
the device that asked stays signed in while the user's other devices are signed out.

The commit is run here one step at a time (the core is sans-IO: this is its runner, on
the real Redis and the real database)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from session_middleware import SessionConfig, sessions
from session_middleware._core.lifecycle import Committed, Opened
from session_middleware._core.steps import Emit, RedisIO, SqlIO
from session_middleware._transport.round_trip import run_async, run_sync

from .support import REDIS_URL, SECRET
from .support.counting import command_name
from .support.http import asgi_client_of, wsgi_client_of
from .support.sql import (
    ASYNC_BACKENDS,
    SYNC_BACKENDS,
    Backend,
    async_users,
    flask_app,
    ids,
    starlette_app,
    sync_users,
)

COOKIE = "session"
# The commit of logout_others with SQL epochs, past the read: the session still stamped as
# loaded, the compare-and-set in the database, the copy written with the session
# re-stamped, the write.
COMMIT_STEPS = [("HGET",), ("SQL",), ("COPY_AND_RESTAMP",), ("WRITE",)]


def header(cookie: str) -> str:
    return f"{COOKIE}={cookie}"


def commit_reading_after_the_database(
    config: SessionConfig, opened: Opened, read: Callable[[], Any]
) -> tuple[Committed, list[tuple[str, ...]], list[Any]]:
    """Core.commit, `read` run before every Redis round trip that follows the database's
    commit: what the commit came to, its steps, and what each read saw."""
    step = config.core.commit(opened, time.time())
    client = config.redis.sync()
    steps: list[tuple[str, ...]] = []
    seen: list[Any] = []
    try:
        request = next(step)
        while True:
            reply: Any = None
            if isinstance(request, SqlIO):
                steps.append(("SQL",))
                with request.engine.begin() as connection:
                    reply = request.run(connection)
            elif isinstance(request, RedisIO):
                if ("SQL",) in steps:
                    seen.append(read())
                steps.append(tuple(command_name(command) for command in request.commands))
                reply = run_sync(client, list(request.commands), request.errors_as_replies)
            else:
                assert isinstance(request, Emit)
            request = step.send(reply)
    except StopIteration as done:
        return done.value, steps, seen


async def acommit_reading_after_the_database(
    config: SessionConfig, opened: Opened, read: Callable[[], Awaitable[Any]]
) -> tuple[Committed, list[tuple[str, ...]], list[Any]]:
    """The async twin of commit_reading_after_the_database."""
    step = config.core.commit(opened, time.time())
    client = config.redis.async_()
    steps: list[tuple[str, ...]] = []
    seen: list[Any] = []
    try:
        request = next(step)
        while True:
            reply: Any = None
            if isinstance(request, SqlIO):
                steps.append(("SQL",))
                async with request.engine.begin() as connection:
                    reply = await connection.run_sync(request.run)
            elif isinstance(request, RedisIO):
                if ("SQL",) in steps:
                    seen.append(await read())
                steps.append(tuple(command_name(command) for command in request.commands))
                commands = list(request.commands)
                reply = await run_async(client, commands, request.errors_as_replies)
            else:
                assert isinstance(request, Emit)
            request = step.send(reply)
    except StopIteration as done:
        return done.value, steps, seen


def after_commit(committed: Committed, cookie: str) -> str:
    """The asking device's cookie once the response arrived."""
    if committed.cookie is not None and committed.cookie.value is not None:
        return committed.cookie.value
    return cookie


@pytest.mark.parametrize("backend", SYNC_BACKENDS, ids=ids(SYNC_BACKENDS))
def test_wsgi_a_second_tab_between_the_database_and_the_restamp_keeps_the_device(
    backend: Backend, key_prefix: str, tmp_path: Path
) -> None:
    with sync_users(backend, tmp_path) as (epochs, table):
        config = sessions(
            secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, epochs=epochs
        )
        app = flask_app(config, epochs, table, "session")
        devices = [wsgi_client_of(app) for _ in range(3)]
        for device in devices:
            assert device.post("/login/1").status_code == 200
        phone, laptop, tablet = devices
        cookie = phone.cookies[COOKIE]

        def second_tab() -> Any:
            with wsgi_client_of(app) as tab:
                tab.cookies[COOKIE] = cookie
                return tab.get("/me").json()["user"]

        opened = config.run_sync(config.core.open(header(cookie), time.time()))
        opened.session.logout_others()
        committed, steps, seen = commit_reading_after_the_database(config, opened, second_tab)
        assert seen == [1, 1], "the second tab is served, before and after the re-stamp"
        assert committed.interrupted is None and committed.rejected is None
        phone.cookies[COOKIE] = after_commit(committed, cookie)
        assert phone.get("/me").json() == {"user": 1, "rejected": None}, "the asker stays"
        for device in (laptop, tablet):
            assert device.get("/me").json() == {"user": None, "rejected": "epoch"}
        assert steps == COMMIT_STEPS, "as many round trips as before, and one statement"
        for device in devices:
            device.close()
    config.close()


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ASYNC_BACKENDS, ids=ids(ASYNC_BACKENDS))
async def test_asgi_a_second_tab_between_the_database_and_the_restamp_keeps_the_device(
    backend: Backend, key_prefix: str, tmp_path: Path
) -> None:
    async with async_users(backend, tmp_path) as (epochs, table):
        config = sessions(
            secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, epochs=epochs
        )
        app = starlette_app(config, epochs, table, "session")
        devices = [asgi_client_of(app) for _ in range(3)]
        for device in devices:
            assert (await device.post("/login/1")).status_code == 200
        phone, laptop, tablet = devices
        cookie = phone.cookies[COOKIE]

        async def second_tab() -> Any:
            async with asgi_client_of(app) as tab:
                tab.cookies[COOKIE] = cookie
                return (await tab.get("/me")).json()["user"]

        opened = await config.run_async(config.core.open(header(cookie), time.time()))
        opened.session.logout_others()
        committed, steps, seen = await acommit_reading_after_the_database(
            config, opened, second_tab
        )
        assert seen == [1, 1], "the second tab is served, before and after the re-stamp"
        assert committed.interrupted is None and committed.rejected is None
        phone.cookies[COOKIE] = after_commit(committed, cookie)
        assert (await phone.get("/me")).json() == {"user": 1, "rejected": None}
        for device in (laptop, tablet):
            assert (await device.get("/me")).json() == {"user": None, "rejected": "epoch"}
        assert steps == COMMIT_STEPS, "as many round trips as before, and one statement"
        for device in devices:
            await device.aclose()
    await config.aclose()
