"""The Redis cache in front of the SQL epoch: what a request costs, and how stale it gets.

Round trips are counted on the session Redis client, statements on the engine. A cache
hit is one round trip (the read script: session and epoch together) and no statement.
A change made in SQL outside the API is noticed after cache_ttl at the latest, or at
once by the next login of that user; with cache_ttl=0 it is noticed at once, at one
query per request.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from session_middleware import sessions
from session_middleware._transport.round_trip import run_sync

from .support import REDIS_URL, SECRET
from .support.counting import Counter, counted_async_client, counted_sync_client
from .support.http import asgi_client_of, wsgi_client_of
from .support.redis_servers import wait_until
from .support.sql import (
    ASYNC_BACKENDS,
    SYNC_BACKENDS,
    Backend,
    SqlCounter,
    async_users,
    flask_app,
    ids,
    login_epoch,
    starlette_app,
    sync_users,
)

SHORT_TTL = 0.4  # seconds; long enough for a few requests, short enough to wait out
OUT_OF_BAND = [SYNC_BACKENDS[0], SYNC_BACKENDS[2]]  # each waits the TTL out twice


def out_of_band(engine: sa.Engine, table: sa.Table, user_id: int, epoch: str | None) -> None:
    """Change the epoch column the way a script or an admin at a SQL prompt would."""
    with engine.begin() as connection:
        change = sa.update(table).where(table.c.id == user_id).values(session_epoch=epoch)
        connection.execute(change)


@pytest.mark.parametrize("backend", SYNC_BACKENDS, ids=ids(SYNC_BACKENDS))
def test_request_costs_wsgi(backend: Backend, key_prefix: str, tmp_path: Path) -> None:
    counter = Counter()
    client = counted_sync_client(counter)
    with sync_users(backend, tmp_path) as (epochs, table):
        config = sessions(secret_key=SECRET, redis=client, key_prefix=key_prefix, epochs=epochs)
        sql = SqlCounter(epochs.engine)
        app = flask_app(config, epochs, table, "connection")
        with wsgi_client_of(app) as first, wsgi_client_of(app) as device:
            first.post("/login/1")  # the first use also reads the table's columns

            counter.reset()
            sql.statements.clear()
            device.post("/login/1")
            # The epoch read (or created) in SQL; the cache fill, then the login write.
            assert [s.split()[0] for s in sql.statements] == ["UPDATE", "SELECT"]
            assert (counter.round_trips, counter.commands) == (2, ["FILL", "LOGIN"])

            counter.reset()
            sql.statements.clear()
            assert device.get("/me").json()["user"] == 1
            assert (counter.round_trips, counter.commands, sql.statements) == (
                1,
                ["HGETALL", "GET"],
                [],
            )

            client.delete(config.keys.epoch_key(config.keys.user_tag(1)))
            counter.reset()
            assert device.get("/me").json()["user"] == 1
            assert (counter.round_trips, counter.commands) == (2, ["HGETALL", "GET", "FILL"])
            assert [s.split()[0] for s in sql.statements] == ["SELECT"]

            counter.reset()
            sql.statements.clear()
            assert device.get("/me").json()["user"] == 1
            assert (counter.round_trips, sql.statements) == (1, [])
        sql.close()
    client.close()


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ASYNC_BACKENDS, ids=ids(ASYNC_BACKENDS))
async def test_request_costs_asgi(backend: Backend, key_prefix: str, tmp_path: Path) -> None:
    counter = Counter()
    client = await counted_async_client(counter)
    async with async_users(backend, tmp_path) as (epochs, table):
        config = sessions(secret_key=SECRET, redis=client, key_prefix=key_prefix, epochs=epochs)
        sql = SqlCounter(epochs.engine)
        async with asgi_client_of(starlette_app(config, epochs, table, "session")) as device:
            await device.post("/login/1")

            counter.reset()
            sql.statements.clear()
            assert (await device.get("/me")).json()["user"] == 1
            assert (counter.round_trips, counter.commands, sql.statements) == (
                1,
                ["HGETALL", "GET"],
                [],
            )

            await client.delete(config.keys.epoch_key(config.keys.user_tag(1)))
            counter.reset()
            assert (await device.get("/me")).json()["user"] == 1
            assert (counter.round_trips, len(sql.statements)) == (2, 1)
        sql.close()
    await client.aclose()


@pytest.mark.parametrize("backend", OUT_OF_BAND, ids=ids(OUT_OF_BAND))
def test_a_change_outside_the_api_is_noticed_within_cache_ttl(
    backend: Backend, key_prefix: str, tmp_path: Path
) -> None:
    with sync_users(backend, tmp_path, cache_ttl=SHORT_TTL) as (epochs, table):
        config = sessions(
            secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, epochs=epochs
        )
        app = flask_app(config, epochs, table, "session")
        with wsgi_client_of(app) as phone, wsgi_client_of(app) as laptop:
            phone.post("/login/1")
            laptop.post("/login/1")
            out_of_band(epochs.engine, table, 1, "set-by-hand")
            assert phone.get("/me").json()["user"] == 1  # the cache still holds the old epoch
            wait_until(lambda: not copied(config, 1), 10.0, "the copy to expire")
            assert phone.get("/me").json() == {"user": None, "rejected": "epoch"}

            # A NULL epoch: every session of the user is rejected, and a login creates one.
            laptop.post("/login/1")
            assert epochs.get(1) == "set-by-hand"
            out_of_band(epochs.engine, table, 1, None)
            wait_until(lambda: not copied(config, 1), 10.0, "the copy to expire")
            assert laptop.get("/me").json() == {"user": None, "rejected": "epoch"}
            laptop.post("/login/1")
            assert laptop.get("/me").json()["user"] == 1
            assert epochs.get(1) not in (None, "set-by-hand")


@pytest.mark.parametrize("backend", SYNC_BACKENDS, ids=ids(SYNC_BACKENDS))
def test_a_login_puts_right_a_cache_left_stale_by_a_change_outside_the_api(
    backend: Backend, key_prefix: str, tmp_path: Path
) -> None:
    with sync_users(backend, tmp_path) as (epochs, table):
        config = sessions(
            secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, epochs=epochs
        )
        app = flask_app(config, epochs, table, "session")
        with wsgi_client_of(app) as phone, wsgi_client_of(app) as laptop:
            phone.post("/login/1")
            out_of_band(epochs.engine, table, 1, "set-by-hand")
            assert phone.get("/me").json()["user"] == 1  # cache_ttl (300 s) not over yet
            laptop.post("/login/1")  # reads "set-by-hand" and corrects the cache
            assert laptop.get("/me").json()["user"] == 1
            assert phone.get("/me").json() == {"user": None, "rejected": "epoch"}


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ASYNC_BACKENDS, ids=ids(ASYNC_BACKENDS))
async def test_without_a_cache_every_request_reads_the_database(
    backend: Backend, key_prefix: str, tmp_path: Path
) -> None:
    counter = Counter()
    client = await counted_async_client(counter)
    async with async_users(backend, tmp_path, cache_ttl=0) as (epochs, table):
        config = sessions(secret_key=SECRET, redis=client, key_prefix=key_prefix, epochs=epochs)
        sql = SqlCounter(epochs.engine)
        async with asgi_client_of(starlette_app(config, epochs, table, "connection")) as device:
            await device.post("/login/1")
            counter.reset()
            sql.statements.clear()
            assert (await device.get("/me")).json()["user"] == 1
            assert (counter.commands, [s.split()[0] for s in sql.statements]) == (
                ["HGETALL"],
                ["SELECT"],
            )
            assert await client.exists(config.keys.epoch_key(config.keys.user_tag(1))) == 0
            async with epochs.engine.begin() as connection:
                change = sa.update(table).where(table.c.id == 1).values(session_epoch="by-hand")
                await connection.execute(change)
            assert (await device.get("/me")).json() == {"user": None, "rejected": "epoch"}
        sql.close()
    await client.aclose()


def test_a_fill_never_overwrites_a_bump_that_committed_after_its_read(
    key_prefix: str, tmp_path: Path
) -> None:
    """The race a cache in front of a database invites, played step by step."""
    with sync_users(SYNC_BACKENDS[2], tmp_path) as (epochs, _table):
        config = sessions(
            secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, epochs=epochs
        )
        old = login_epoch(epochs, 1)
        tag = config.keys.user_tag(1)
        client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        client.delete(config.keys.epoch_key(tag))

        # A request misses the cache and reads the database...
        fill = epochs.resolve(1, tag, None)
        read_step = next(fill)
        with epochs.engine.begin() as connection:
            read = read_step.run(connection)
        assert read == old
        # ... a password reset commits and publishes meanwhile ...
        new = epochs.bump(1)
        # ... then the request's fill reaches Redis.
        result = finish(fill, read, lambda commands: run_sync(client, commands))
        assert result == new
        assert client.get(config.keys.epoch_key(tag)) == new
        client.close()


def finish(op: Any, value: Any, redis_io: Callable[[Any], Any]) -> Any:
    try:
        step = op.send(value)
        while True:
            step = op.send(redis_io(step.commands))
    except StopIteration as done:
        return done.value


def copied(config: Any, user_id: Any) -> bool:
    """Whether Redis holds a copy of the user's epoch under any of their tags."""
    keys = [config.keys.epoch_key(tag) for tag in config.keys.user_tags(user_id)]
    with redis.Redis.from_url(REDIS_URL) as client:
        return bool(client.exists(*keys))
