"""A request's own epoch change is durable like invalidate_user.

`logout_others()`, and a login that also logs the others out, wait for a replica of the
master to have the new epoch (on a pooled connection, never the shared one), within
invalidate_deadline. Against a real master whose only replica is frozen, each such
request fails to be made durable: its session ends (cookie cleared, record deleted), the
failure is reported as a "rejected" event with reason "unreplicated" and a log line, and
the requests of other users on the shared connection go on being served.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import httpx
import pytest

from session_middleware import SessionConfig, SessionEvent

from .support.apps import asgi_app, wsgi_app
from .support.redis_servers import ReplicatedServers

USERS = 4
READS = 20
NOT_DURABLE = "could not be made durable"


@pytest.fixture
def replicated() -> Iterator[ReplicatedServers]:
    with ReplicatedServers().running() as servers:
        try:
            yield servers
        finally:
            if servers.replica.paused:
                servers.replica.resume()


def unreplicated(events: list[SessionEvent]) -> list[SessionEvent]:
    return [e for e in events if e.kind == "rejected" and e.reason == "unreplicated"]


def cleared(response: httpx.Response) -> bool:
    return "Max-Age=0" in response.headers.get("set-cookie", "")


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/others", "/login"])
async def test_asgi_epoch_changes_wait_for_a_replica_and_a_frozen_one_ends_the_session(
    path: str, replicated: ReplicatedServers, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[SessionEvent] = []
    config: SessionConfig = replicated.short_deadline_config(events.append)
    app = config(asgi_app)

    def client() -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

    users = [f"user{n}" for n in range(USERS)]
    phones = {user: client() for user in users}
    laptops = {user: client() for user in users}
    reader = client()
    try:
        for user in users:
            for device in (phones[user], laptops[user]):
                await device.get("/login", params={"user": user})
        await reader.get("/login", params={"user": "reader"})

        # With the replica in step, the change is made and the others are logged out.
        settled = await phones[users[0]].get("/others")
        assert settled.status_code == 200 and not cleared(settled)
        assert (await laptops[users[0]].get("/read")).json()["rejected"] == "epoch"
        assert unreplicated(events) == []

        replicated.replica.pause()
        caplog.set_level(logging.WARNING, logger="session_middleware")

        async def change(user: str) -> httpx.Response:
            # /login of the same user, then /others in the same request: a rotation
            # that also logs the others out.
            if path == "/login":
                return await phones[user].get("/login", params={"user": user, "others": "1"})
            return await phones[user].get("/others")

        async def read() -> str | None:
            response = await reader.get("/read")
            assert response.status_code == 200
            return response.json()["user"]  # type: ignore[no-any-return]

        changes = asyncio.gather(*(change(user) for user in users[1:]))
        reads = asyncio.gather(*(read() for _ in range(READS)))
        responses, seen = await asyncio.wait_for(asyncio.gather(changes, reads), 60)
    finally:
        if replicated.replica.paused:
            replicated.replica.resume()
    assert seen == ["reader"] * READS, "the shared connection went on serving others"
    assert [r.status_code for r in responses] == [200] * (USERS - 1)
    assert sum(cleared(r) for r in responses) == USERS - 1, "each session was ended"
    for user in users[1:]:
        assert (await phones[user].get("/read")).json()["user"] is None
    ended = unreplicated(events)
    assert sorted(e.user_id for e in ended) == users[1:], "each failure was reported"
    assert sum(NOT_DURABLE in r.getMessage() for r in caplog.records) == USERS - 1
    for device in [*phones.values(), *laptops.values(), reader]:
        await device.aclose()
    await config.aclose()


def test_wsgi_logout_others_with_a_frozen_replica_ends_the_session(
    replicated: ReplicatedServers, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[SessionEvent] = []
    config: SessionConfig = replicated.short_deadline_config(events.append)
    app = config(wsgi_app)
    transport = httpx.WSGITransport(app=app)
    with (
        httpx.Client(transport=transport, base_url="http://t") as phone,
        httpx.Client(transport=transport, base_url="http://t") as laptop,
    ):
        for device in (phone, laptop):
            device.get("/login", params={"user": "alice"})
        replicated.replica.pause()
        caplog.set_level(logging.WARNING, logger="session_middleware")
        try:
            response = phone.get("/others")
        finally:
            replicated.replica.resume()
        assert response.status_code == 200 and cleared(response)
        assert phone.get("/read").json()["user"] is None
        assert [(e.kind, e.user_id) for e in unreplicated(events)] == [("rejected", "alice")]
        assert sum(NOT_DURABLE in r.getMessage() for r in caplog.records) == 1
    config.close()
