"""Lifecycle events: each kind is reported once, with the user and the session's public
handle, through the on_event setting, Django's session_event signal and Flask's."""

from __future__ import annotations

import pytest

import session_middleware._request_cycle as request_cycle
from session_middleware import SessionConfig, SessionEvent, sessions

from .support import CLOSED_PORT_URL, REDIS_URL, SECRET, keys_under
from .support.clock import clock_of
from .support.http import asgi_client

pytestmark = pytest.mark.anyio


def recorder(config: SessionConfig) -> list[SessionEvent]:
    seen: list[SessionEvent] = []
    config.listeners.add(seen.append)
    return seen


async def test_every_kind_is_reported_with_its_user_and_handle(
    key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cap ends the session that ends soonest: each login a second after the one before,
    # so that no two end in the same millisecond (a tie would end either).
    later = clock_of(monkeypatch, request_cycle)
    config = sessions(
        secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, max_sessions_per_user=2
    )
    seen = recorder(config)
    async with (
        asgi_client(config) as phone,
        asgi_client(config) as laptop,
        asgi_client(config) as tablet,
    ):
        await phone.get("/login?user=alice")
        handle = (await phone.get("/handle")).json()["handle"]
        assert seen == [SessionEvent("login", "alice", handle)]
        later.advance(1)
        await phone.get("/login?user=alice")  # again: a rotation
        rotated = (await phone.get("/handle")).json()["handle"]
        assert seen[-1] == SessionEvent("rotation", "alice", rotated)
        later.advance(1)
        await laptop.get("/login?user=alice")
        later.advance(1)
        await tablet.get("/login?user=alice")  # a third: the cap ends the oldest (phone)
        assert seen[-2:] == [
            SessionEvent("login", "alice", seen[-2].handle),
            SessionEvent("evicted", "alice", rotated),
        ]
        await laptop.get("/others")
        assert seen[-1].kind == "logout_others" and seen[-1].user_id == "alice"
        assert (await tablet.get("/read")).json()["user"] is None
        assert seen[-1] == SessionEvent("rejected", "alice", seen[-1].handle, "epoch")
        (listed,) = await config.alist_sessions("alice")
        assert await config.arevoke_session("alice", listed.handle)
        assert seen[-1] == SessionEvent("revoke", "alice", listed.handle)
        await config.ainvalidate_user("alice")
        assert seen[-1] == SessionEvent("invalidate", "alice")
        await phone.get("/login?user=bob")
        await phone.get("/logout")
        assert seen[-1].kind == "logout" and seen[-1].user_id == "bob"
    assert len(keys_under(key_prefix)) >= 1


async def test_corrupt_and_unavailable_are_reported(key_prefix: str) -> None:
    import redis

    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    seen = recorder(config)
    async with asgi_client(config) as client:
        await client.get("/login?user=carol")
        (key,) = [k for k in keys_under(key_prefix) if ":s:" in k]
        redis.Redis.from_url(REDIS_URL).hset(key, "x", "not a number")
        await client.get("/read")
    assert seen[-1].kind == "rejected" and seen[-1].reason == "corrupt"
    down = sessions(secret_key=SECRET, redis_url=CLOSED_PORT_URL, redis_timeout=0.5)
    down_seen = recorder(down)
    async with asgi_client(down) as client:
        assert (await client.get("/set?key=a&value=1")).status_code == 503
    assert down_seen == [SessionEvent("rejected", reason="unavailable")]


async def test_a_failing_listener_never_fails_the_request(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: SessionEvent) -> None:
        raise RuntimeError("the audit log is down")

    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    config.listeners.add(broken)
    seen = recorder(config)
    async with asgi_client(config) as client:
        assert (await client.get("/login?user=dave")).status_code == 200
    assert [event.kind for event in seen] == ["login"]
    assert "listener failed on a login event" in caplog.text


def test_flask_sends_its_signal(key_prefix: str) -> None:
    import flask

    from session_middleware.flask import init_app, session_event

    app = flask.Flask(__name__)
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    init_app(app, config)

    @app.post("/login")
    def login() -> str:
        flask.session.login("erin")
        return ""

    received: list[tuple[object, SessionEvent]] = []

    def on_event(sender: object, event: SessionEvent) -> None:
        received.append((sender, event))

    session_event.connect(on_event, app)
    app.test_client().post("/login")
    assert [(sender, event.kind, event.user_id) for sender, event in received] == [
        (app, "login", "erin")
    ]
