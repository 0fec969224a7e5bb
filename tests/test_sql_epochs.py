"""SQLEpochs against every real database, through a real app.

The story, per database and driver: log in on two devices, a password reset that fails
after bumping (rolled back: both devices stay logged in, the hash is unchanged), a
password reset that commits (both devices rejected), a new login that works. Then the
errors a caller of `bump` must see, on each database.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from session_middleware import sessions
from session_middleware.epochs.sql import UnknownUser

from .support import REDIS_URL, SECRET
from .support.http import asgi_client_of, wsgi_client_of
from .support.sql import (
    ASYNC_BACKENDS,
    OLD_HASH,
    SYNC_BACKENDS,
    Backend,
    aepoch_in_db,
    alogin_epoch,
    async_users,
    epoch_in_db,
    flask_app,
    ids,
    login_epoch,
    starlette_app,
    sync_users,
)

# Each database runs the story once through a Connection and, where there are two
# drivers, once through an ORM Session, so every bump_in path meets a real server.
SYNC_STORIES = [
    (SYNC_BACKENDS[0], "connection"),
    (SYNC_BACKENDS[1], "session"),
    (SYNC_BACKENDS[2], "session"),
    (SYNC_BACKENDS[3], "connection"),
]
ASYNC_STORIES = [
    (ASYNC_BACKENDS[0], "session"),
    (ASYNC_BACKENDS[1], "connection"),
    (ASYNC_BACKENDS[2], "session"),
]


def story_id(case: tuple[Backend, str]) -> str:
    return f"{case[0].name}-{case[1]}"


@pytest.mark.parametrize("case", SYNC_STORIES, ids=story_id)
def test_password_reset_story_wsgi(
    case: tuple[Backend, str], key_prefix: str, tmp_path: Path
) -> None:
    backend, tx = case
    with sync_users(backend, tmp_path) as (epochs, table):
        config = sessions(
            secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, epochs=epochs
        )
        app = flask_app(config, epochs, table, tx)
        with (
            wsgi_client_of(app) as phone,
            wsgi_client_of(app) as laptop,
            wsgi_client_of(app) as other,
        ):
            for device in (phone, laptop):
                assert device.post("/login/1").status_code == 200
                assert device.get("/me").json() == {"user": 1, "rejected": None}
            other.post("/login/2")
            first = epoch_in_db(epochs.engine, table, 1)
            assert first is not None and len(first) == 32

            assert phone.post("/reset/1?fail=1").status_code == 409
            assert epoch_in_db(epochs.engine, table, 1) == first
            with epochs.engine.connect() as connection:
                hashes = connection.execute(sa.select(table.c.password_hash)).scalars()
                assert set(hashes) == {OLD_HASH}
            for device in (phone, laptop):
                assert device.get("/me").json() == {"user": 1, "rejected": None}

            assert phone.post("/reset/1").status_code == 200
            assert epoch_in_db(epochs.engine, table, 1) not in (None, first)
            for device in (phone, laptop):
                assert device.get("/me").json() == {"user": None, "rejected": "epoch"}
                assert device.get("/me").json() == {"user": None, "rejected": None}
            assert other.get("/me").json() == {"user": 2, "rejected": None}

            assert laptop.post("/login/1").status_code == 200
            assert laptop.get("/me").json() == {"user": 1, "rejected": None}
            assert phone.get("/me").json() == {"user": None, "rejected": None}

            # "Sign out my other devices": a bump in its own transaction, this one re-stamped.
            phone.post("/login/1")
            before = epoch_in_db(epochs.engine, table, 1)
            assert laptop.post("/others").status_code == 200
            assert epoch_in_db(epochs.engine, table, 1) != before
            assert laptop.get("/me").json() == {"user": 1, "rejected": None}
            assert phone.get("/me").json() == {"user": None, "rejected": "epoch"}


@pytest.mark.anyio
@pytest.mark.parametrize("case", ASYNC_STORIES, ids=story_id)
async def test_password_reset_story_asgi(
    case: tuple[Backend, str], key_prefix: str, tmp_path: Path
) -> None:
    backend, tx = case
    async with async_users(backend, tmp_path) as (epochs, table):
        config = sessions(
            secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, epochs=epochs
        )
        app = starlette_app(config, epochs, table, tx)
        async with (
            asgi_client_of(app) as phone,
            asgi_client_of(app) as laptop,
            asgi_client_of(app) as other,
        ):
            for device in (phone, laptop):
                assert (await device.post("/login/1")).status_code == 200
                assert (await device.get("/me")).json() == {"user": 1, "rejected": None}
            await other.post("/login/2")
            first = await aepoch_in_db(epochs.engine, table, 1)
            assert first is not None and len(first) == 32

            assert (await phone.post("/reset/1?fail=1")).status_code == 409
            assert await aepoch_in_db(epochs.engine, table, 1) == first
            for device in (phone, laptop):
                assert (await device.get("/me")).json() == {"user": 1, "rejected": None}

            assert (await phone.post("/reset/1")).status_code == 200
            assert await aepoch_in_db(epochs.engine, table, 1) not in (None, first)
            for device in (phone, laptop):
                assert (await device.get("/me")).json() == {"user": None, "rejected": "epoch"}
            assert (await other.get("/me")).json() == {"user": 2, "rejected": None}

            assert (await laptop.post("/login/1")).status_code == 200
            assert (await laptop.get("/me")).json() == {"user": 1, "rejected": None}

            await phone.post("/login/1")
            assert (await laptop.post("/others")).status_code == 200
            assert (await laptop.get("/me")).json() == {"user": 1, "rejected": None}
            assert (await phone.get("/me")).json() == {"user": None, "rejected": "epoch"}
        await config.ainvalidate_user(2)
        async with asgi_client_of(app) as other:
            assert (await other.get("/me")).json()["user"] is None


# -- what a caller of bump sees ---------------------------------------------------------------


@pytest.mark.parametrize("backend", SYNC_BACKENDS, ids=ids(SYNC_BACKENDS))
def test_bump_refuses_unknown_and_wrongly_typed_users(
    backend: Backend, key_prefix: str, tmp_path: Path
) -> None:
    with sync_users(backend, tmp_path) as (epochs, table):
        config = sessions(
            secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, epochs=epochs
        )
        with pytest.raises(UnknownUser, match="no user 99"):
            config.invalidate_user(99)
        with pytest.raises(TypeError, match="holds integers: user_id must be an int"):
            epochs.bump("1")
        with pytest.raises(TypeError, match="must be a str or an int"):
            epochs.bump(1.5)  # type: ignore[arg-type]
        with pytest.raises(UnknownUser):
            login_epoch(epochs, 99)
        with epochs.engine.begin() as connection, pytest.raises(UnknownUser):
            epochs.bump_in(connection, 99)
        assert epoch_in_db(epochs.engine, table, 1) is None  # nothing was written

        first = epochs.bump(1)
        assert epochs.get(1) == first == epoch_in_db(epochs.engine, table, 1)
        assert epochs.bump(1) not in (first, None)
        assert epochs.get(99) is None


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ASYNC_BACKENDS, ids=ids(ASYNC_BACKENDS))
async def test_abump_refuses_unknown_and_wrongly_typed_users(
    backend: Backend, key_prefix: str, tmp_path: Path
) -> None:
    async with async_users(
        backend,
        tmp_path,
        id_type=sa.String(40),
        rows=[{"id": "alice", "password_hash": OLD_HASH, "session_epoch": None}],
    ) as (epochs, table):
        config = sessions(
            secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, epochs=epochs
        )
        with pytest.raises(UnknownUser, match="no user 'bob'"):
            await config.ainvalidate_user("bob")
        with pytest.raises(TypeError, match="holds strings: user_id must be a str"):
            await epochs.abump(1)
        with pytest.raises(UnknownUser):
            await alogin_epoch(epochs, "bob")
        assert await aepoch_in_db(epochs.engine, table, "alice") is None

        first = await alogin_epoch(epochs, "alice")
        assert await alogin_epoch(epochs, "alice") == first  # created once, then kept
        assert await epochs.aget("alice") == first
        assert await epochs.abump("alice") != first


def test_a_session_a_request_accepts_is_listed_under_either_spelling_of_its_user(
    key_prefix: str, tmp_path: Path
) -> None:
    """One check says whether a record is alive, for a request and for list_sessions.

    They used to differ: the listing looked the epoch up under the id it was given, the
    request under the id the session holds. With the cached copy gone, listing user "1"
    of an integer column found no epoch, and dropped from the index a session the next
    request still served."""
    with sync_users(SYNC_BACKENDS[0], tmp_path) as (epochs, table):
        config = sessions(
            secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, epochs=epochs
        )
        app = flask_app(config, epochs, table, "connection")
        with wsgi_client_of(app) as phone:
            assert phone.post("/login/1").status_code == 200
            copy = config.keys.epoch_key(config.keys.user_tag(1))
            config.redis.sync().delete(copy)
            (listed,) = config.list_sessions("1")
            config.redis.sync().delete(copy)
            assert [info.handle for info in config.list_sessions(1)] == [listed.handle]
            assert phone.get("/me").json() == {"user": 1, "rejected": None}
            assert [info.handle for info in config.list_sessions("1")] == [listed.handle]
        config.close()
