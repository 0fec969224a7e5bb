"""Session ids: 256 random bits, never repeated, never adopted from a client; a login
rotates the id and ends the old one; a stale cookie is cleared; signing keys rotate
without ending sessions or escaping invalidation."""

from __future__ import annotations

import base64

import pytest
import redis

from session_middleware import SessionConfig, sessions

from .support import OTHER_SECRET, REDIS_URL, SECRET
from .support.apps import wsgi_app
from .support.http import asgi_client, cookie_of, logged_in_cookie, read_with, wsgi_call
from .support.stored import session_keys

pytestmark = pytest.mark.anyio


def test_session_ids_carry_256_random_bits_and_never_repeat(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    cookies = [cookie_of(wsgi_call(app, "/set?key=a&value=1")[1]) for _ in range(50)]
    cookies += [cookie_of(wsgi_call(app, "/login?user=alice")[1]) for _ in range(50)]
    ids = [cookie.split(".")[1] for cookie in cookies]
    assert len(set(ids)) == len(ids)
    assert {len(base64.urlsafe_b64decode(i + "=")) for i in ids} == {32}
    anonymous_tags = {cookie.split(".")[0] for cookie in cookies[:50]}
    assert len(anonymous_tags) == 50, "an anonymous session's tag is random too"
    config.redis.close()


def test_logging_in_again_rotates_the_id_and_ends_the_old_one(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    before = cookie_of(wsgi_call(app, "/login?user=alice")[1])
    wsgi_call(app, "/set?key=cart&value=3", f"session={before}")
    after = cookie_of(wsgi_call(app, "/login?user=alice", f"session={before}")[1])
    assert after.split(".")[1] != before.split(".")[1]
    assert wsgi_call(app, "/read", f"session={after}")[2]["data"] == {"cart": "3"}
    stale = wsgi_call(app, "/read", f"session={before}")
    assert stale[2]["user"] is None and "Max-Age=0" in stale[1]["set-cookie"]
    assert len(config.list_sessions("alice")) == 1
    config.redis.close()


async def test_an_unknown_session_id_is_cleared_and_never_adopted(config: SessionConfig) -> None:
    cookie = await logged_in_cookie(config)
    redis.Redis.from_url(REDIS_URL).delete(*session_keys(config.keys.prefix))
    async with asgi_client(config) as client:
        response = await client.get("/set?key=a&value=1", headers={"cookie": f"session={cookie}"})
    assert response.json()["user"] is None
    new_cookie = response.headers["set-cookie"]
    assert cookie not in new_cookie, "a fresh id is issued, the stale one is not reused"
    assert len(session_keys(config.keys.prefix)) == 1


async def test_a_stale_cookie_alone_is_cleared(config: SessionConfig) -> None:
    cookie = await logged_in_cookie(config)
    redis.Redis.from_url(REDIS_URL).delete(*session_keys(config.keys.prefix))
    response = await read_with(config, f"session={cookie}")
    assert "Max-Age=0" in response.headers["set-cookie"]


async def test_rotated_keys_keep_old_sessions_and_invalidation_reaches_them(
    key_prefix: str,
) -> None:
    old = sessions(secret_key=OTHER_SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    rotated = sessions(
        secret_key=[SECRET, OTHER_SECRET], redis_url=REDIS_URL, key_prefix=key_prefix
    )
    old_cookie = await logged_in_cookie(old)
    assert (await read_with(rotated, f"session={old_cookie}")).json()["user"] == "alice"
    new_cookie = await logged_in_cookie(rotated)
    assert new_cookie.split(".")[0] != old_cookie.split(".")[0]
    await rotated.ainvalidate_user("alice")
    assert (await read_with(rotated, f"session={old_cookie}")).json()["rejected"] == "epoch"
    assert (await read_with(rotated, f"session={new_cookie}")).json()["rejected"] == "epoch"
