"""Expired sessions reported from Redis keyspace notifications: an ``expired`` event with
the session's handle reaches on_event, Django's and Flask's signals, once per session, for
this configuration's prefix and db only. Each test runs a redis-server of its own, started
with notifications on (the shared Redis's settings are never changed)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from session_middleware import SessionConfig, SessionEvent, sessions
from session_middleware.errors import ConfigurationError
from session_middleware.expiry import RECONNECTED, keyevent_channel

from .support import SECRET
from .support.following import ended_within, following_threads
from .support.http import wsgi_client
from .support.redis_servers import RedisServer, SentinelServers, Servers, standalone

DEADLINE = 20.0  # seconds: Redis's active expiry finds a key in well under a second


@pytest.fixture(params=["Kx", "Ex", "KEA"])
def notifying(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A redis-server of this test's own, with `notify-keyspace-events` set so."""
    group: Servers
    group, server = standalone(["--notify-keyspace-events", request.param])
    try:
        yield server
    finally:
        group.stop()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def expired(events: list[SessionEvent]) -> list[SessionEvent]:
    return [event for event in events if event.kind == "expired"]


def logged_in_handle(config: SessionConfig, user: str) -> str:
    with wsgi_client(config) as client:
        client.get(f"/login?user={user}")
    (session,) = config.list_sessions(user)
    return session.handle


def expire_now(server: RedisServer, config: SessionConfig, handle: str) -> None:
    """Give the session's record a TTL of 1 ms: Redis itself expires it."""
    client = server.client()
    (key,) = [k.decode() for k in client.scan_iter(match=f"*:s:{handle}")]
    assert key.startswith(config.keys.prefix)
    assert client.pexpire(key, 1)
    client.close()


def test_an_expired_session_is_reported_once_with_its_handle(
    notifying: RedisServer, key_prefix: str
) -> None:
    config = sessions(secret_key=SECRET, redis_url=notifying.url, key_prefix=key_prefix)
    seen: list[SessionEvent] = []
    config.listeners.add(seen.append)
    elsewhere = sessions(secret_key=SECRET, redis_url=notifying.url, key_prefix="another:")
    with config.listen_for_expiry() as listener:
        assert listener.wait_subscribed(DEADLINE)
        first = logged_in_handle(config, "alice")
        expire_now(notifying, config, first)
        wait_for(lambda: bool(expired(seen)), "the first expired event")
        # Another prefix's session, and keys that are not records, are not ours to report.
        expire_now(notifying, elsewhere, logged_in_handle(elsewhere, "alice"))
        with notifying.client() as client:
            client.set(f"{key_prefix}unrelated", "x", px=1)
        second = logged_in_handle(config, "bob")
        expire_now(notifying, config, second)
        # Redis publishes a key's notifications together, and in the order keys expire.
        wait_for(lambda: len(expired(seen)) >= 2, "the second expired event")
    assert expired(seen) == [
        SessionEvent("expired", handle=first),
        SessionEvent("expired", handle=second),
    ]
    # An audit log finds the user by the handle of the session's login event.
    assert SessionEvent("login", "alice", first) in seen
    assert not listener.running


def test_stop_ends_the_thread_and_its_subscription(key_prefix: str) -> None:
    group, server = standalone(["--notify-keyspace-events", "Kx"])
    try:
        config = sessions(secret_key=SECRET, redis_url=server.url, key_prefix=key_prefix)
        listener = config.listen_for_expiry()
        assert listener.wait_subscribed(DEADLINE)
        observer = server.client()
        assert observer.pubsub_numpat() == 1
        listener.stop()
        assert not listener.running
        wait_for(lambda: observer.pubsub_numpat() == 0, "the subscription to end")
        observer.close()
    finally:
        group.stop()


def test_subscribed_means_redis_has_run_the_subscriptions(key_prefix: str) -> None:
    group, server = standalone(["--notify-keyspace-events", "Kx"])
    try:
        config = sessions(secret_key=SECRET, redis_url=server.url, key_prefix=key_prefix)
        assert config.redis.sync().ping()  # a connection left idle in the pool, for the listener
        server.pause()  # the subscriptions reach a Redis that does not run them yet
        listener = config.listen_for_expiry()
        try:
            assert not listener.wait_subscribed(1.0)
        finally:
            server.resume()
        assert listener.wait_subscribed(DEADLINE)
        with server.client() as observer:
            assert observer.pubsub_numpat() == 1
            assert observer.pubsub_numsub(keyevent_channel(0)) == [
                (keyevent_channel(0).encode(), 1)
            ]
        listener.stop()
    finally:
        group.stop()


def test_a_connection_made_again_at_once_is_logged(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-py's retry connects the listener again within its wait for a message, and
    subscribes again: what Redis published meanwhile is lost, and the log says so."""
    group, server = standalone(["--notify-keyspace-events", "Kx"])
    try:
        config = sessions(secret_key=SECRET, redis_url=server.url, key_prefix=key_prefix)
        with config.listen_for_expiry() as listener, server.client() as admin:
            assert listener.wait_subscribed(DEADLINE)
            assert admin.client_kill_filter(_type="pubsub") == 1
            wait_for(lambda: RECONNECTED in caplog.messages, "the warning")
            wait_for(lambda: admin.pubsub_numpat() == 1, "the listener to subscribe again")
            handle = logged_in_handle(config, "grace")
            seen: list[SessionEvent] = []
            config.listeners.add(seen.append)
            expire_now(server, config, handle)
            wait_for(lambda: bool(expired(seen)), "the expired event after the reconnection")
    finally:
        group.stop()


def test_the_listener_comes_back_after_redis_restarts(key_prefix: str) -> None:
    group, server = standalone(["--notify-keyspace-events", "Kx"])
    try:
        config = sessions(secret_key=SECRET, redis_url=server.url, key_prefix=key_prefix)
        seen: list[SessionEvent] = []
        config.listeners.add(seen.append)
        with config.listen_for_expiry() as listener:
            assert listener.wait_subscribed(DEADLINE)
            server.kill()
            wait_for(lambda: not listener.wait_subscribed(0), "the listener to notice")
            server.start()
            assert listener.wait_subscribed(DEADLINE)
            handle = logged_in_handle(config, "carol")
            expire_now(server, config, handle)
            wait_for(lambda: bool(expired(seen)), "the expired event after the restart")
        assert expired(seen) == [SessionEvent("expired", handle=handle)]
    finally:
        group.stop()


def test_flask_sends_expired_events_as_its_signal(key_prefix: str) -> None:
    import flask

    from session_middleware.flask import init_app, session_event

    group, server = standalone(["--notify-keyspace-events", "Kx"])
    try:
        app = flask.Flask(__name__)
        config = sessions(secret_key=SECRET, redis_url=server.url, key_prefix=key_prefix)
        init_app(app, config)
        received: list[tuple[object, SessionEvent]] = []

        def on_event(sender: object, event: SessionEvent) -> None:
            received.append((sender, event))

        session_event.connect(on_event, app)
        with config.listen_for_expiry() as listener:
            assert listener.wait_subscribed(DEADLINE)
            handle = logged_in_handle(config, "dave")
            expire_now(server, config, handle)
            wait_for(
                lambda: (app, SessionEvent("expired", handle=handle)) in received, "the signal"
            )
        assert [event.kind for _, event in received] == ["login", "expired"]
    finally:
        group.stop()


def test_a_cluster_or_an_async_only_client_is_refused_clearly() -> None:
    async_only = sessions(secret_key=SECRET, redis=redis.asyncio.Redis())
    with pytest.raises(ConfigurationError, match="sync Redis client"):
        async_only.listen_for_expiry()
    cluster = sessions(secret_key=SECRET, redis_url="redis+cluster://127.0.0.1:1/0")
    with pytest.raises(ConfigurationError, match="Cluster"):
        cluster.listen_for_expiry()


def test_django_sends_expired_events_as_its_signal(key_prefix: str) -> None:
    from .support.django_native.settings import configure

    configure()
    from django.test.utils import override_settings

    from session_middleware.django import SessionStore
    from session_middleware.django._settings import get_config
    from session_middleware.django.signals import session_event

    group, server = standalone(["--notify-keyspace-events", "Ex"])
    received: list[tuple[object, SessionEvent]] = []

    def on_event(sender: object, event: SessionEvent, **kwargs: object) -> None:
        received.append((sender, event))

    options = {"secret_key": SECRET, "redis_url": server.url, "key_prefix": key_prefix}
    session_event.connect(on_event)
    try:
        with override_settings(SESSION_MIDDLEWARE=options):
            config = get_config()
            with config.listen_for_expiry() as listener:
                assert listener.wait_subscribed(DEADLINE)
                handle = logged_in_handle(config, "7")
                expire_now(server, config, handle)
                wait_for(lambda: len(received) == 2, "Django's signal")
    finally:
        session_event.disconnect(on_event)
        group.stop()
    assert received[-1] == (SessionStore, SessionEvent("expired", handle=handle))


@pytest.mark.parametrize(
    ("flags", "said"), [("", "off"), ("Ex", "on"), ("Kx", "on"), ("KEA", "on"), ("KEg", "off")]
)
def test_check_says_whether_expiry_notifications_are_on(
    flags: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from session_middleware.cli import main

    group, server = standalone(["--notify-keyspace-events", flags])
    try:
        main(["--redis-url", server.url, "--json", "check"])
    finally:
        group.stop()
    assert json.loads(capsys.readouterr().out)["expiry_events"] == said


def test_check_says_unknown_when_config_is_not_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    from session_middleware.cli import main

    group, server = standalone(["--rename-command", "CONFIG", ""])
    try:
        main(["--redis-url", server.url, "check"])
    finally:
        group.stop()
    assert "expiry events (notify-keyspace-events): unknown" in capsys.readouterr().out


def test_on_sentinel_the_listener_follows_a_failover(key_prefix: str) -> None:
    group = SentinelServers("expiry").start()
    try:
        for server in (group.master, group.replica):
            with server.client() as client:
                client.config_set("notify-keyspace-events", "Kx")
        config = sessions(secret_key=SECRET, redis_url=group.url, key_prefix=key_prefix)
        seen: list[SessionEvent] = []
        config.listeners.add(seen.append)
        with config.listen_for_expiry() as listener:
            assert listener.wait_subscribed(DEADLINE)
            before = logged_in_handle(config, "erin")
            expire_now(group.current_master(), config, before)
            wait_for(lambda: bool(expired(seen)), "the expired event before the failover")
            new = group.start_failover()
            group.wait_promoted(new)
            with new.client() as observer:
                wait_for(lambda: observer.pubsub_numpat() == 1, "the listener on the new master")
            after = logged_in_handle(config, "frank")
            expire_now(new, config, after)
            wait_for(lambda: len(expired(seen)) == 2, "the expired event after the failover")
        assert expired(seen) == [
            SessionEvent("expired", handle=before),
            SessionEvent("expired", handle=after),
        ]
        threads = following_threads(config)
        config.close()
        assert ended_within(threads, DEADLINE)
    finally:
        group.stop()
