"""Keys of the wrong type planted at a user's epoch or index do not lock the user out.

Someone with write access to Redis (or a bug elsewhere) leaves a HASH at a user's epoch
key or a STRING at their index; neither has a TTL. A login treats them as corrupt,
replaces them and logs it; list_sessions, revoke_session and logout_others survive them;
and a read never serves a session whose user's epoch key is of the wrong type.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from session_middleware import SessionConfig, sessions
from session_middleware.epochs.sql import SQLEpochs

from .support import REDIS_URL, SECRET
from .support.apps import asgi_app
from .support.stored import redis_plant

pytestmark = pytest.mark.anyio

WRONG = {
    "epoch": {"planted": "a hash where a string belongs"},
    "index": "a string where a sorted set belongs",
}
REPLACED = "of the wrong type"


def planted_at(config: SessionConfig, user: str, where: str) -> str:
    tag = config.keys.user_tag(user)
    key = config.keys.epoch_key(tag) if where == "epoch" else config.keys.index_key(tag)
    redis_plant(key, WRONG[where])
    return key


@pytest.fixture(params=["redis", "sql"])
async def config(
    request: pytest.FixtureRequest, key_prefix: str, tmp_path: Path
) -> AsyncIterator[SessionConfig]:
    epochs = None
    if request.param == "sql":
        epochs = SQLEpochs.managed(f"sqlite+aiosqlite:///{tmp_path}/epochs.db")
    configured = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix,
                          epochs=epochs)  # fmt: skip
    yield configured
    if epochs is not None:  # on the test's event loop, before it closes
        await epochs.adispose()


async def prepared(config: SessionConfig) -> None:
    if isinstance(config.epochs, SQLEpochs):
        await config.epochs.acreate_table()


def client(config: SessionConfig) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=config(asgi_app))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.mark.parametrize("where", ["epoch", "index"])
async def test_a_login_replaces_a_key_of_the_wrong_type_and_says_so(
    where: str, config: SessionConfig, caplog: pytest.LogCaptureFixture
) -> None:
    await prepared(config)
    planted_at(config, "alice", where)
    caplog.set_level(logging.WARNING, logger="session_middleware")
    async with client(config) as browser:
        response = await browser.get("/login", params={"user": "alice"})
        assert response.status_code == 200, response.text
        assert (await browser.get("/read")).json()["user"] == "alice"
        listed = await config.alist_sessions("alice")
        assert len(listed) == 1
        assert await config.arevoke_session("alice", listed[0].handle)
    # SQLEpochs keeps only a cache of the epoch in Redis: a corrupt copy is refilled.
    if where == "index" or not isinstance(config.epochs, SQLEpochs):
        assert any(REPLACED in record.getMessage() for record in caplog.records), "not logged"


@pytest.mark.parametrize("where", ["epoch", "index"])
async def test_user_operations_survive_a_key_of_the_wrong_type(
    where: str, config: SessionConfig
) -> None:
    await prepared(config)
    async with client(config) as browser:
        await browser.get("/login", params={"user": "alice"})
        handle = (await config.alist_sessions("alice"))[0].handle
        planted_at(config, "alice", where)
        listed = await config.alist_sessions("alice")
        revoked = await config.arevoke_session("alice", handle)
        if where == "index":
            assert (listed, revoked) == ([], False), "an index that is not ours lists nothing"
        await config.ainvalidate_user("alice", delete=True)
        assert (await browser.get("/read")).json()["user"] is None


async def test_a_read_never_serves_a_session_whose_epoch_key_is_of_the_wrong_type(
    key_prefix: str,
) -> None:
    """Where Redis holds the epoch itself (no database to verify it against)."""
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    async with client(config) as browser:
        await browser.get("/login", params={"user": "alice"})
        planted_at(config, "alice", "epoch")
        seen = (await browser.get("/read")).json()
        assert seen == {"user": None, "rejected": "epoch", "data": {}}, "served unverified"
