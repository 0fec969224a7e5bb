"""The database holding the epochs is unreachable: fail closed, as when Redis is down.

A session is logged in through a working database; the same sessions are then served by
an app whose SQLEpochs points at a port nothing listens on (or, for SQLite, a file that
cannot be opened). A request whose epoch is cached is served from the cache; one that
misses the cache, and any login, gets the 503 the drivers give when Redis is down.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from session_middleware import sessions
from session_middleware.epochs.sql import EpochStoreUnavailable, SQLEpochs

from .support import REDIS_URL, SECRET
from .support.http import asgi_client_of, wsgi_client_of
from .support.redis_servers import free_port
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


def unreachable(backend: Backend, tmp_path: Path) -> str:
    url = sa.make_url(backend.resolve(tmp_path))
    if url.get_backend_name() == "sqlite":
        return str(url.set(database=str(tmp_path / "no-such-directory" / "epochs.db")))
    return url.set(port=free_port()).render_as_string(hide_password=False)


@pytest.mark.parametrize("backend", SYNC_BACKENDS, ids=ids(SYNC_BACKENDS))
def test_database_down_on_a_cache_miss_gives_503_wsgi(
    backend: Backend, key_prefix: str, tmp_path: Path
) -> None:
    with sync_users(backend, tmp_path) as (epochs, table):
        settings = {"secret_key": SECRET, "redis_url": REDIS_URL, "key_prefix": key_prefix}
        config = sessions(**settings, epochs=epochs)
        down = SQLEpochs(unreachable(backend, tmp_path), table=table.name)
        config_down = sessions(**settings, epochs=down)
        app_down = flask_app(config_down, down, table, "connection")
        with wsgi_client_of(flask_app(config, epochs, table, "connection")) as device:
            device.post("/login/1")
            with wsgi_client_of(app_down) as same_device:
                same_device.cookies = device.cookies
                assert same_device.get("/me").json()["user"] == 1  # served from the cache
                config.redis.sync().delete(config.keys.epoch_key(config.keys.user_tag(1)))
                response = same_device.get("/me")
                assert response.status_code == 503
                assert "session store cannot be reached" in response.text
                assert same_device.post("/login/2").status_code == 503
            with pytest.raises(EpochStoreUnavailable, match="cannot be reached"):
                config_down.invalidate_user(1)
            # The database is back: the same cookie is served again.
            assert device.get("/me").json()["user"] == 1
        down.dispose()


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ASYNC_BACKENDS, ids=ids(ASYNC_BACKENDS))
async def test_database_down_on_a_cache_miss_gives_503_asgi(
    backend: Backend, key_prefix: str, tmp_path: Path
) -> None:
    async with async_users(backend, tmp_path) as (epochs, table):
        settings = {"secret_key": SECRET, "redis_url": REDIS_URL, "key_prefix": key_prefix}
        config = sessions(**settings, epochs=epochs)
        down = SQLEpochs(unreachable(backend, tmp_path), table=table.name)
        config_down = sessions(**settings, epochs=down)
        app_down = starlette_app(config_down, down, table, "connection")
        async with asgi_client_of(starlette_app(config, epochs, table, "connection")) as device:
            await device.post("/login/1")
            async with asgi_client_of(app_down) as same_device:
                same_device.cookies = device.cookies
                assert (await same_device.get("/me")).json()["user"] == 1
                epoch_key = config.keys.epoch_key(config.keys.user_tag(1))
                await config.redis.async_().execute_command("DEL", epoch_key)
                assert (await same_device.get("/me")).status_code == 503
                assert (await same_device.post("/login/2")).status_code == 503
            with pytest.raises(EpochStoreUnavailable):
                await config_down.ainvalidate_user(1)
            assert (await device.get("/me")).json()["user"] == 1
        await down.adispose()
