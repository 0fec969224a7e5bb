"""A user's active sessions: the per-user index, listing, revoking, invalidating."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import redis

import session_middleware._request_cycle as request_cycle
from session_middleware import SessionConfig, sessions

from .support import REDIS_URL, SECRET, keys_under
from .support.apps import asgi_app
from .support.clock import clock_of
from .support.counting import Counter, counted_async_client
from .support.redis_servers import wait_until

pytestmark = pytest.mark.anyio


@dataclass
class Rig:
    config: SessionConfig
    counter: Counter
    prefix: str

    def device(self, user_agent: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.config(asgi_app), client=("203.0.113.7", 5000))
        return httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers={"user-agent": user_agent}
        )


@pytest.fixture
async def rig(key_prefix: str) -> AsyncIterator[Rig]:
    counter = Counter()
    client = await counted_async_client(counter)
    yield Rig(sessions(secret_key=SECRET, redis=client, key_prefix=key_prefix), counter, key_prefix)
    await client.aclose()


async def handle_of(client: httpx.AsyncClient) -> str:
    handle = (await client.get("/handle")).json()["handle"]
    assert isinstance(handle, str)
    return handle


async def test_listing_shows_each_device_and_marks_this_one(rig: Rig) -> None:
    phone, laptop, tablet = rig.device("Phone/1"), rig.device("Laptop/2"), rig.device("Tablet/3")
    async with phone, laptop, tablet:
        for client in (phone, laptop, tablet):
            await client.get("/login?user=alice")
        listed = await rig.config.alist_sessions("alice")
        assert sorted(s.user_agent for s in listed) == ["Laptop/2", "Phone/1", "Tablet/3"]
        assert {s.ip for s in listed} == {"203.0.113.7"}
        phone_handle = await handle_of(phone)
        assert phone_handle in {s.handle for s in listed}
        cookie = phone.cookies["session"]
        for info in listed:
            assert info.handle not in cookie and cookie.split(".")[1] not in info.handle
            assert info.created_at <= info.last_seen < info.expires_at
        assert await rig.config.alist_sessions("bob") == []


async def test_revoking_one_session_ends_it_at_once(rig: Rig) -> None:
    async with rig.device("Phone") as phone, rig.device("Laptop") as laptop:
        await phone.get("/login?user=alice")
        await laptop.get("/login?user=alice")
        laptop_handle = await handle_of(laptop)
        assert await rig.config.arevoke_session("alice", laptop_handle) is True
        assert (await laptop.get("/read")).json()["user"] is None
        assert (await phone.get("/read")).json()["user"] == "alice"
        assert [s.user_agent for s in await rig.config.alist_sessions("alice")] == ["Phone"]
        assert await rig.config.arevoke_session("alice", laptop_handle) is False


async def test_a_handle_of_another_user_is_refused(rig: Rig) -> None:
    async with rig.device("Alice") as alice, rig.device("Bob") as bob:
        await alice.get("/login?user=alice")
        await bob.get("/login?user=bob")
        bob_handle = await handle_of(bob)
        assert await rig.config.arevoke_session("alice", bob_handle) is False
        assert await rig.config.arevoke_session("alice", "not-a-handle") is False
        assert (await bob.get("/read")).json()["user"] == "bob"


async def test_logout_others_leaves_only_this_session_listed(rig: Rig) -> None:
    async with rig.device("Phone") as phone, rig.device("Laptop") as laptop:
        await phone.get("/login?user=alice")
        await laptop.get("/login?user=alice")
        await phone.get("/others")
        listed = await rig.config.alist_sessions("alice")
        assert [s.handle for s in listed] == [await handle_of(phone)]


async def test_logout_removes_the_session_from_the_listing(rig: Rig) -> None:
    async with rig.device("Phone") as phone:
        await phone.get("/login?user=alice")
        await phone.get("/logout")
    assert await rig.config.alist_sessions("alice") == []
    assert keys_under(rig.prefix) == [k for k in keys_under(rig.prefix) if k.endswith(":e")]


async def test_invalidate_without_delete_hides_sessions_and_prunes_the_index(rig: Rig) -> None:
    async with rig.device("Phone") as phone, rig.device("Laptop") as laptop:
        await phone.get("/login?user=alice")
        await laptop.get("/login?user=alice")
        await rig.config.ainvalidate_user("alice")
        assert len([k for k in keys_under(rig.prefix) if ":s:" in k]) == 2
        assert await rig.config.alist_sessions("alice") == []
        assert not [k for k in keys_under(rig.prefix) if k.endswith(":i")]


async def test_invalidate_with_delete_frees_the_records_now(rig: Rig) -> None:
    async with rig.device("Phone") as phone, rig.device("Laptop") as laptop:
        await phone.get("/login?user=alice")
        await laptop.get("/login?user=alice")
        async with rig.device("Other") as other:
            await other.get("/login?user=bob")
            await rig.config.ainvalidate_user("alice", delete=True)
            remaining = [k for k in keys_under(rig.prefix) if ":s:" in k or k.endswith(":i")]
            assert len(remaining) == 2, "only bob's record and index are left"
            assert (await phone.get("/read")).json()["user"] is None
            assert (await other.get("/read")).json()["user"] == "bob"


def test_the_sync_twins_work(key_prefix: str) -> None:
    from .support.apps import wsgi_app

    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    transport = httpx.WSGITransport(app=config(wsgi_app))
    with (
        httpx.Client(transport=transport, base_url="http://t") as a,
        httpx.Client(transport=transport, base_url="http://t") as b,
    ):
        a.get("/login?user=dave")
        b.get("/login?user=dave")
        listed = config.list_sessions("dave")
        assert len(listed) == 2
        assert config.revoke_session("dave", listed[0].handle) is True
        assert len(config.list_sessions("dave")) == 1
        config.invalidate_user("dave", delete=True)
        assert config.list_sessions("dave") == []
        assert [k for k in keys_under(key_prefix) if ":s:" in k] == []


async def test_expired_entries_are_pruned_when_the_index_is_written(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, idle_timeout=1)
    transport = httpx.ASGITransport(app=config(asgi_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as first:
        await first.get("/login?user=erin")
    (index,) = [k for k in keys_under(key_prefix) if k.endswith(":i")]
    plain = redis.Redis.from_url(REDIS_URL)
    assert plain.zcard(index) == 1
    assert plain.pttl(index) > 0, "the index carries a TTL of its own"
    # The session expires: its record goes, its entry's score (its expiry) is past.
    (record,) = [k for k in keys_under(key_prefix) if ":s:" in k]
    plain.pexpire(record, 1)
    wait_until(lambda: not plain.exists(record), 5, "the record to expire")
    plain.zadd(index, dict.fromkeys(plain.zrange(index, 0, -1), 1), xx=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as second:
        await second.get("/login?user=erin")
    assert plain.zcard(index) == 1, "the expired entry was pruned by the second login"
    assert len(await config.alist_sessions("erin")) == 1


async def test_all_keys_of_a_user_share_one_hash_slot(rig: Rig) -> None:
    async with rig.device("Phone") as phone:
        await phone.get("/login?user=alice")
    keys = keys_under(rig.prefix)
    assert {key.split("}")[0] for key in keys} == {keys[0].split("}")[0]}
    assert {key.rsplit(":", 2)[-1][:1] for key in keys} >= {"e", "i"}


async def test_the_index_costs_no_extra_round_trip(key_prefix: str) -> None:
    counter = Counter()
    client = await counted_async_client(counter)
    config = sessions(secret_key=SECRET, redis=client, key_prefix=key_prefix, idle_timeout=600)
    transport = httpx.ASGITransport(app=config(asgi_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as browser:
        await browser.get("/set?key=a&value=1")
        counter.reset()
        await browser.get("/login?user=alice")
        assert counter.round_trips == 2, "read + one pipeline, index included"
        counter.reset()
        await browser.get("/set?key=b&value=2")
        assert counter.round_trips == 2
        assert counter.commands == ["HGETALL", "GET", "WRITE"], (
            "record and index written by one command"
        )
        counter.reset()
        await browser.get("/read")
        assert (counter.round_trips, counter.commands) == (1, ["HGETALL", "GET"])
    await client.aclose()


async def test_a_login_past_the_cap_ends_the_oldest_sessions(
    key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = clock_of(monkeypatch, request_cycle)
    config = sessions(
        secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, max_sessions_per_user=3
    )
    transport = httpx.ASGITransport(app=config(asgi_app))
    devices = [httpx.AsyncClient(transport=transport, base_url="http://t") for _ in range(5)]
    for device in devices:
        await device.get("/login?user=alice")
        later.advance(1)  # distinct expiries: the order of the logins
    users = [(await device.get("/me")).json()["user"] for device in devices]
    assert users == [None, None, "alice", "alice", "alice"]
    assert len(await config.alist_sessions("alice")) == 3
    assert len([key for key in keys_under(key_prefix) if ":s:" in key]) == 3
    for device in devices:
        await device.aclose()
    await config.aclose()


async def test_the_cap_can_be_lifted(key_prefix: str) -> None:
    config = sessions(
        secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, max_sessions_per_user=None
    )
    transport = httpx.ASGITransport(app=config(asgi_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as device:
        for _ in range(150):
            device.cookies.clear()
            await device.get("/login?user=alice")
    assert len(await config.alist_sessions("alice")) == 150
    await config.aclose()
