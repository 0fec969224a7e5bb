"""Concurrent requests on one session, on the real Redis: no lost update, no resurrection."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from session_middleware import SessionConfig, get_session

from .support import keys_under

pytestmark = pytest.mark.anyio


class Gate:
    """An app whose /slow requests hold their response until released."""

    def __init__(self) -> None:
        self.loaded = asyncio.Event()
        self.release = asyncio.Event()

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        session = get_session(scope)
        path = scope["path"]
        query = dict(pair.split("=") for pair in scope["query_string"].decode().split("&") if pair)
        if path == "/login":
            session.login(query["user"])
        elif path == "/logout":
            session.logout()
        elif path in ("/set", "/slow"):
            session[query["key"]] = query["value"]
        if path == "/slow":
            self.loaded.set()
            await self.release.wait()
        body = json.dumps({"user": session.user_id, "data": dict(session)}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def client_for(config: SessionConfig, gate: Gate) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=config(gate.app)), base_url="http://testserver"
    )


async def test_concurrent_changes_to_different_keys_both_survive(config: SessionConfig) -> None:
    gate = Gate()
    async with client_for(config, gate) as client:
        await client.get("/login?user=alice")
        slow = asyncio.create_task(client.get("/slow?key=theme&value=dark"))
        await gate.loaded.wait()
        await client.get("/set?key=cart&value=3")
        gate.release.set()
        await slow
        data = (await client.get("/read")).json()["data"]
    assert data == {"theme": "dark", "cart": "3"}


async def test_the_same_key_goes_to_the_last_writer(config: SessionConfig) -> None:
    gate = Gate()
    async with client_for(config, gate) as client:
        await client.get("/set?key=color&value=first")
        slow = asyncio.create_task(client.get("/slow?key=color&value=slow"))
        await gate.loaded.wait()
        await client.get("/set?key=color&value=fast")
        gate.release.set()
        await slow
        assert (await client.get("/read")).json()["data"] == {"color": "slow"}


async def test_a_logout_is_not_undone_by_a_request_in_flight(config: SessionConfig) -> None:
    gate = Gate()
    async with client_for(config, gate) as client:
        await client.get("/login?user=alice")
        cookie = client.cookies["session"]
        slow = asyncio.create_task(client.get("/slow?key=late&value=1"))
        await gate.loaded.wait()
        await client.get("/logout")
        gate.release.set()
        await slow
    assert [k for k in keys_under(config.keys.prefix) if ":s:" in k] == []
    async with client_for(config, Gate()) as replay:
        response = await replay.get("/read", headers={"cookie": f"session={cookie}"})
    assert response.json()["user"] is None


async def test_a_revocation_is_not_undone_by_a_request_in_flight(config: SessionConfig) -> None:
    gate = Gate()
    async with client_for(config, gate) as client:
        await client.get("/login?user=alice")
        (listed,) = await config.alist_sessions("alice")
        slow = asyncio.create_task(client.get("/slow?key=late&value=1"))
        await gate.loaded.wait()
        assert await config.arevoke_session("alice", listed.handle)
        gate.release.set()
        await slow
        assert (await client.get("/read")).json()["user"] is None
    assert await config.alist_sessions("alice") == []


async def test_an_invalidation_is_not_undone_by_a_request_in_flight(config: SessionConfig) -> None:
    gate = Gate()
    async with client_for(config, gate) as client:
        await client.get("/login?user=alice")
        slow = asyncio.create_task(client.get("/slow?key=late&value=1"))
        await gate.loaded.wait()
        await config.ainvalidate_user("alice")
        gate.release.set()
        await slow
        assert (await client.get("/read")).json()["user"] is None


async def test_interleaved_commits_through_the_core(config: SessionConfig) -> None:
    gate = Gate()
    async with client_for(config, gate) as client:
        await client.get("/set?key=a&value=0")
        header = f"session={client.cookies['session']}"
    first = await config.run_async(config.core.open(header, time.time()))
    second = await config.run_async(config.core.open(header, time.time()))
    first.session["a"] = "1"
    del second.session["a"]
    second.session["b"] = "2"
    await config.run_async(config.core.commit(second, time.time()))
    await config.run_async(config.core.commit(first, time.time()))
    final = await config.run_async(config.core.open(header, time.time()))
    assert dict(final.session) == {"a": "1", "b": "2"}


async def test_many_concurrent_writers_all_keep_their_change(config: SessionConfig) -> None:
    gate = Gate()
    async with client_for(config, gate) as client:
        await client.get("/login?user=alice")
        header = f"session={client.cookies['session']}"
    opened = [await config.run_async(config.core.open(header, time.time())) for _ in range(24)]
    for number, each in enumerate(opened):
        each.session[f"k{number}"] = number
    await asyncio.gather(
        *(config.run_async(config.core.commit(each, time.time())) for each in opened)
    )
    final = await config.run_async(config.core.open(header, time.time()))
    assert dict(final.session) == {f"k{number}": number for number in range(24)}
