"""The session lifecycle through the ASGI driver, on the real Redis, round trips counted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from session_middleware import SessionConfig, sessions

from .support import REDIS_URL, SECRET, keys_under
from .support.apps import asgi_app
from .support.counting import Counter, counted_async_client

pytestmark = pytest.mark.anyio


@dataclass
class Rig:
    config: SessionConfig
    counter: Counter
    prefix: str

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.config(asgi_app))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def rig(key_prefix: str) -> AsyncIterator[Rig]:
    counter = Counter()
    client = await counted_async_client(counter)
    config = sessions(secret_key=SECRET, redis=client, key_prefix=key_prefix)
    yield Rig(config, counter, key_prefix)
    await client.aclose()


async def test_untouched_request_without_cookie_costs_nothing(rig: Rig) -> None:
    async with rig.client() as client:
        response = await client.get("/untouched")
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    assert rig.counter.round_trips == 0


async def test_reading_an_empty_session_without_cookie_writes_nothing(rig: Rig) -> None:
    async with rig.client() as client:
        response = await client.get("/read")
    assert "set-cookie" not in response.headers
    assert rig.counter.round_trips == 0
    assert keys_under(rig.prefix) == []


async def test_first_write_creates_a_session_with_a_safe_cookie(rig: Rig) -> None:
    async with rig.client() as client:
        response = await client.get("/set?key=cart&value=apples")
        assert rig.counter.round_trips == 1
        assert rig.counter.commands == ["CREATE"]
        cookie = response.headers["set-cookie"]
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
        assert "Max-Age=1209600" in cookie
        assert "apples" not in cookie
        assert (await client.get("/read")).json()["data"] == {"cart": "apples"}


async def test_logged_in_read_is_one_round_trip_of_two_plain_reads(rig: Rig) -> None:
    async with rig.client() as client:
        await client.get("/login?user=alice")
        rig.counter.reset()
        response = await client.get("/read")
    assert response.json()["user"] == "alice"
    assert "set-cookie" not in response.headers
    assert rig.counter.round_trips == 1
    assert rig.counter.commands == ["HGETALL", "GET"]


async def test_logged_in_write_is_one_more_round_trip(rig: Rig) -> None:
    async with rig.client() as client:
        await client.get("/login?user=alice")
        rig.counter.reset()
        await client.get("/set?key=a&value=1")
        assert rig.counter.round_trips == 2
        assert rig.counter.commands == ["HGETALL", "GET", "WRITE"]
        assert (await client.get("/read")).json()["data"] == {"a": "1"}


async def test_login_rotates_the_id_deletes_the_old_record_and_keeps_data(rig: Rig) -> None:
    async with rig.client() as client:
        first = await client.get("/set?key=cart&value=pears")
        before = set(keys_under(rig.prefix))
        rig.counter.reset()
        second = await client.get("/login?user=bob")
        assert rig.counter.round_trips == 2
        assert first.cookies["session"] != second.cookies["session"]
        after = set(keys_under(rig.prefix))
        assert not before & after, "the pre-login record must be gone"
        body = (await client.get("/read")).json()
    assert body["user"] == "bob" and body["data"] == {"cart": "pears"}


async def test_login_as_another_user_starts_with_empty_data(rig: Rig) -> None:
    async with rig.client() as client:
        await client.get("/login?user=alice")
        await client.get("/set?key=secret&value=alice-only")
        await client.get("/login?user=mallory")
        body = (await client.get("/read")).json()
    assert body == {"user": "mallory", "rejected": None, "data": {}}


async def test_logout_deletes_the_record_and_clears_the_cookie(rig: Rig) -> None:
    async with rig.client() as client:
        await client.get("/login?user=alice")
        response = await client.get("/logout")
        assert "Max-Age=0" in response.headers["set-cookie"]
        assert [k for k in keys_under(rig.prefix) if ":s:" in k] == []
        assert (await client.get("/read")).json()["user"] is None


async def test_logout_others_keeps_this_session_and_rejects_the_rest(rig: Rig) -> None:
    async with rig.client() as phone, rig.client() as laptop:
        await phone.get("/login?user=alice")
        await laptop.get("/login?user=alice")
        rig.counter.reset()
        await phone.get("/others")
        # The read; the compare-and-set of the epoch, made durable as invalidate_user's
        # (its writes and INFO replication: no replica to wait for here); the re-stamp.
        assert rig.counter.round_trips == 3
        assert (await phone.get("/read")).json()["user"] == "alice"
        rejected = await laptop.get("/read")
        assert rejected.json() == {"user": None, "rejected": "epoch", "data": {}}
        assert "Max-Age=0" in rejected.headers["set-cookie"]
        assert (await laptop.get("/read")).json()["rejected"] is None


async def test_invalidate_user_rejects_every_session_and_new_logins_work(rig: Rig) -> None:
    async with rig.client() as phone, rig.client() as laptop, rig.client() as other:
        await phone.get("/login?user=alice")
        await laptop.get("/login?user=alice")
        await other.get("/login?user=bob")
        await rig.config.ainvalidate_user("alice")
        assert (await phone.get("/read")).json()["rejected"] == "epoch"
        assert (await laptop.get("/read")).json()["rejected"] == "epoch"
        assert (await other.get("/read")).json()["user"] == "bob"
        await phone.get("/login?user=alice")
        assert (await phone.get("/read")).json()["user"] == "alice"


async def test_a_rejected_record_is_deleted(rig: Rig) -> None:
    async with rig.client() as client:
        await client.get("/login?user=alice")
        await rig.config.ainvalidate_user("alice")
        await client.get("/read")
    assert [k for k in keys_under(rig.prefix) if ":s:" in k] == []


async def test_a_session_whose_user_has_no_epoch_is_rejected(rig: Rig) -> None:
    async with rig.client() as client:
        await client.get("/login?user=alice")
        plain = redis.Redis.from_url(REDIS_URL)
        plain.delete(*[k for k in keys_under(rig.prefix) if k.endswith(":e")])
        plain.close()
        assert (await client.get("/read")).json()["rejected"] == "epoch"


async def test_nested_change_in_place_is_saved(rig: Rig) -> None:
    async with rig.client() as client:
        await client.get("/append?value=1")
        await client.get("/append?value=2")
        assert (await client.get("/read")).json()["data"] == {"items": ["1", "2"]}


async def test_emptying_an_anonymous_session_deletes_it(rig: Rig) -> None:
    async with rig.client() as client:
        await client.get("/set?key=a&value=1")
        response = await client.get("/clear")
    assert "Max-Age=0" in response.headers["set-cookie"]
    assert keys_under(rig.prefix) == []


async def test_changing_the_session_after_the_response_started_raises(rig: Rig) -> None:
    async with rig.client() as client:
        response = await client.get("/stream")
    assert "response has started" in response.text


async def test_the_cookie_and_keys_never_reveal_the_session_id_or_user(rig: Rig) -> None:
    async with rig.client() as client:
        response = await client.get("/login?user=alice@example.com")
    _tag, session_id, _signature = response.cookies["session"].split(".")
    assert "alice" not in response.headers["set-cookie"]
    assert len(session_id) >= 22  # at least 128 bits, url-safe base64
    for key in keys_under(rig.prefix):
        assert session_id not in key


async def test_one_connection_pool_is_reused(rig: Rig) -> None:
    async with rig.client() as client:
        await client.get("/login?user=alice")
        for _ in range(20):
            await client.get("/read")
    pool = rig.config.redis.async_().connection_pool
    assert len(pool._available_connections) + len(pool._in_use_connections) == 1


async def test_url_configured_clients_reuse_one_pool(config: SessionConfig) -> None:
    transport = httpx.ASGITransport(app=config(asgi_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get("/login?user=alice")
        for _ in range(10):
            await client.get("/read")
    client_redis = config.redis.async_()
    assert client_redis.connections_opened == 1  # one multiplexed connection, reused
    await client_redis.aclose()


async def test_lifespan_passes_through_untouched(rig: Rig) -> None:
    app = rig.config(asgi_app)
    sent: list[dict[str, object]] = []
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, object]:
        return next(messages)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope: dict[str, object] = {"type": "lifespan", "asgi": {"version": "3.0"}}
    await app(scope, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert "session" not in scope
    assert rig.counter.round_trips == 0
