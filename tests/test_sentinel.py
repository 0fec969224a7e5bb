"""Redis Sentinel: a real master, a replica and three sentinels on loopback.

The session story runs through a Sentinel URL and through Sentinel master clients given
as objects; writes can be made to wait for the replica (WAIT); a forced failover
(SENTINEL FAILOVER) leaves the apps working, on the new master, without a restart.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio.sentinel
import redis.sentinel

from session_middleware import ConfigurationError, NotReplicated, SessionConfig, sessions
from session_middleware._protocol.durability import Replication
from session_middleware._transport.clients import RedisClients, parse_redis_url
from session_middleware._transport.replication import (
    run_replicated_async,
    run_replicated_sync,
)
from session_middleware._transport.sentinel_follow import ASK_INTERVAL, MasterFollower, _event

from .support import SECRET, new_prefix
from .support.following import ended_within, following_threads
from .support.redis_servers import SentinelServers
from .support.stories import Browser, browsers_for, full_story

SERVICE = "mymaster"
ONE_REPLICA = Replication(wanted=1, timeout_ms=2000, deadline=5.0)
# One attempt or two, each waiting 150 ms for the replica.
SHORT_WAIT = Replication(wanted=1, timeout_ms=150, deadline=0.3)
FAILOVER_DEADLINE = 20.0
# Sentinel demotes a replaced master that is still up only ~10 s after the failover (its
# INFO period); the apps must have moved to the new master well before (they hear of the
# failover from the sentinels' events, _transport/sentinel_follow.py).
FOLLOW_DEADLINE = 4.0


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelServers]:
    servers = SentinelServers(SERVICE).start()
    try:
        yield servers
    finally:
        servers.stop()


def _config(redis_url: str | None = None, client: Any = None, **settings: Any) -> SessionConfig:
    settings.setdefault("key_prefix", new_prefix())
    settings.setdefault("redis_timeout", 0.5)
    return sessions(secret_key=SECRET, redis_url=redis_url, redis=client, **settings)


# -- the URL ---------------------------------------------------------------------------


def test_sentinel_url_names_the_sentinels_the_service_and_the_database() -> None:
    target = parse_redis_url(
        "redis+sentinel://:pw@10.0.0.1:5000,10.0.0.2/mymaster/2"
        "?sentinel_password=sp&socket_timeout=0.25"
    )
    assert target.topology == "sentinel"
    assert target.nodes == (("10.0.0.1", 5000), ("10.0.0.2", 26379))
    assert target.service == "mymaster"
    assert target.options == {
        "password": "pw",
        "db": 2,
        "sentinel_password": "sp",
        "socket_timeout": 0.25,
    }
    assert parse_redis_url("rediss+sentinel://h/s").options == {"ssl": True}


@pytest.mark.parametrize(
    "url", ["redis+sentinel://h:1", "redis+sentinel://h:1/s/0/extra", "redis+sentinel://:1/s"]
)
def test_bad_sentinel_urls_are_refused_at_configuration(url: str) -> None:
    with pytest.raises(ConfigurationError):
        sessions(secret_key=SECRET, redis_url=url)


# -- the story -------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("face", ["asgi", "wsgi"])
async def test_full_story_on_a_sentinel_url(group: SentinelServers, face: str) -> None:
    config = _config(group.url)
    assert config.redis.topology == "sentinel"
    await full_story(browsers_for(config, face))
    config.redis.close()
    await config.redis.aclose()


@pytest.mark.anyio
async def test_full_story_on_given_sentinel_master_clients(group: SentinelServers) -> None:
    sync_master = redis.sentinel.Sentinel(group.addresses, socket_timeout=1.0).master_for(
        SERVICE, socket_timeout=1.0
    )
    async_master = redis.asyncio.sentinel.Sentinel(group.addresses, socket_timeout=1.0).master_for(
        SERVICE, socket_timeout=1.0
    )
    try:
        for client, face in [(sync_master, "wsgi"), (async_master, "asgi")]:
            config = _config(client=client)
            assert config.redis.topology == "sentinel"
            await full_story(browsers_for(config, face))
    finally:
        sync_master.close()
        await async_master.aclose()


# -- waiting for the replica -----------------------------------------------------------


@pytest.mark.anyio
async def test_a_write_waited_for_is_on_the_replica_when_it_returns(
    group: SentinelServers,
) -> None:
    clients = RedisClients(url=group.url, client=None, timeout=1.0)
    key = f"{new_prefix()}{{t}}:e"
    with group.current_replica().client(decode_responses=True) as replica:
        assert run_replicated_sync(clients.sync(), [("SET", key, "one")], ONE_REPLICA) == [True]
        assert replica.get(key) == "one"
        replies = await run_replicated_async(clients.async_(), [("SET", key, "two")], ONE_REPLICA)
        assert replies == [True]
        assert replica.get(key) == "two"
    clients.close()
    await clients.aclose()


@pytest.mark.anyio
async def test_a_write_no_replica_acknowledges_fails_after_the_timeout(
    group: SentinelServers,
) -> None:
    clients = RedisClients(url=group.url, client=None, timeout=1.0)
    key = f"{new_prefix()}{{t}}:e"
    replica = group.current_replica()
    replica.pause()
    try:
        with pytest.raises(NotReplicated) as raised:
            run_replicated_sync(clients.sync(), [("SET", key, "one")], SHORT_WAIT)
        assert (raised.value.acknowledged, raised.value.wanted) == (0, 1)
        with pytest.raises(NotReplicated):
            await run_replicated_async(clients.async_(), [("SET", key, "two")], SHORT_WAIT)
    finally:
        replica.resume()
    with group.current_master().client(decode_responses=True) as master:
        assert master.get(key) == "two"  # applied on the master, only not confirmed
    group.wait_replicated()
    clients.close()
    await clients.aclose()


@pytest.mark.anyio
async def test_invalidate_user_can_wait_for_a_replica(group: SentinelServers) -> None:
    config = _config(
        group.url,
        invalidate_wait_replicas=1,
        invalidate_wait_timeout_ms=300,
        invalidate_deadline=0.5,
        redis_timeout=2.0,  # no failover here: room for connecting through Sentinel under load
    )
    user = f"user-{uuid.uuid4().hex[:8]}"
    browser = browsers_for(config, "asgi")()
    await browser.ok("POST", f"/login?user={user}")
    epoch_key = config.keys.epoch_key(config.keys.user_tag(user))
    replica = group.current_replica()
    with replica.client(decode_responses=True) as reader:
        before = reader.get(epoch_key)
        config.invalidate_user(user)
        assert reader.get(epoch_key) not in (None, before)  # there as soon as it returned
        await config.ainvalidate_user(user)
        with group.current_master().client(decode_responses=True) as master:
            assert reader.get(epoch_key) == master.get(epoch_key)
    assert (await browser.ok("GET", "/me"))["rejected"] == "epoch"

    replica.pause()
    try:
        with pytest.raises(NotReplicated):
            config.invalidate_user(user)
        with pytest.raises(NotReplicated):
            await config.ainvalidate_user(user)
    finally:
        replica.resume()
    group.wait_replicated()
    await browser.close()


@pytest.mark.anyio
@pytest.mark.parametrize("face", ["asgi-multiplexed", "asgi-pool", "wsgi"])
async def test_a_server_that_says_it_is_not_the_master_is_not_used(
    group: SentinelServers, face: str
) -> None:
    """Every new connection asks ROLE: when the master known is in fact a replica (a
    sentinel's stale view), requests get the 503, never a session read from it."""
    config = _config(group.url, redis_multiplex=face != "asgi-pool")
    browser = browsers_for(config, face.split("-")[0])()
    await browser.ok("POST", "/login?user=bob")
    follower = config.redis.follower(config.redis.target)
    replica = _a_replica(group)
    follower.known(("127.0.0.1", replica.port), follower.epoch + 1000)
    for _ in range(3):
        status, _ = await browser.call("GET", "/me")
        assert status == 503
    await browser.close()
    config.redis.close()
    await config.redis.aclose()


def _a_replica(group: SentinelServers) -> Any:
    """A server that says it is a replica (after a failover, the old master says so
    only once Sentinel reconfigured it)."""
    deadline = time.monotonic() + FAILOVER_DEADLINE
    while True:
        for server in group.data_servers:
            with server.client(decode_responses=True) as client:
                if client.execute_command("ROLE")[0] == "slave":
                    return server
        assert time.monotonic() < deadline, "no server says it is a replica"
        time.sleep(0.1)


# -- failover --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_after_a_forced_failover_the_apps_work_on_the_new_master(
    group: SentinelServers,
) -> None:
    config = _config(group.url)
    asgi, wsgi = browsers_for(config, "asgi"), browsers_for(config, "wsgi")
    devices = [asgi(), wsgi()]
    for device in devices:
        await device.ok("POST", "/login?user=alice")
        assert (await device.ok("POST", "/hit"))["count"] == 1
    group.wait_replicated()

    new = group.start_failover()
    deadline = time.monotonic() + FAILOVER_DEADLINE
    while not _is_master_everywhere(group, new):
        assert time.monotonic() < deadline, "the sentinels did not promote the replica"
        for device in devices:
            status, body = await _served(device)
            assert status == 503 or body["user"] == "alice"
        await asyncio.sleep(0.05)

    # A process that starts now reaches the new master; the apps' connections, opened on
    # the old master (still up, and a master until Sentinel reconfigures it), follow at
    # once, long before that reconfiguration. A request caught on a connection as it is
    # dropped gets the 503 (fail closed), never another user.
    admin = _config(group.url, key_prefix=config.keys.prefix)
    admin.invalidate_user("alice")
    invalidated = time.monotonic()
    for device in devices:
        while True:
            status, body = await _served(device)
            if status == 200 and body["user"] is None:
                break
            assert status == 503 or body["user"] == "alice"
            assert time.monotonic() - invalidated < FOLLOW_DEADLINE, "still on the old master"
            await asyncio.sleep(0.05)

    for device in devices:
        await device.ok("POST", "/login?user=alice")
        assert (await device.ok("POST", "/hit"))["count"] == 1
        await device.close()
    await full_story(asgi)
    await full_story(wsgi)
    with new.client(decode_responses=True) as client:
        assert client.get(config.keys.epoch_key(config.keys.user_tag("alice"))) is not None
    admin.redis.close()
    config.redis.close()
    await config.redis.aclose()


def _is_master_everywhere(group: SentinelServers, server: Any) -> bool:
    try:
        return group.current_master() is server and all(
            _sentinel_says(sentinel, group.service) == server.port for sentinel in group.sentinels
        )
    except redis.RedisError:
        return False


def _sentinel_says(sentinel: Any, service: str) -> int:
    with sentinel.client(decode_responses=True) as client:
        _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", service)
    return int(port)


async def _served(browser: Browser) -> tuple[int, Any]:
    before = dict(browser.client.cookies)
    status, body = await browser.call("GET", "/me")
    assert status in (200, 503), (status, body)
    if status == 503:
        assert dict(browser.client.cookies) == before
    return status, body


# -- closing -----------------------------------------------------------------------------


def test_close_ends_the_threads_that_follow_the_master(group: SentinelServers) -> None:
    config = _config(group.url)
    assert config.list_sessions("nobody") == []  # a sync client, following the master
    threads = following_threads(config)
    config.close()
    assert ended_within(threads, FOLLOW_DEADLINE)
    # Still usable: the next command builds a client, and the following starts again.
    assert config.list_sessions("nobody") == []
    again = following_threads(config)
    assert not set(again) & set(threads)
    config.close()
    assert ended_within(again, FOLLOW_DEADLINE)


@pytest.mark.anyio
async def test_the_master_is_followed_until_every_client_is_closed(
    group: SentinelServers,
) -> None:
    config = _config(group.url)
    assert await config.alist_sessions("nobody") == []
    assert config.list_sessions("nobody") == []
    threads = following_threads(config)
    config.close()  # the event loop's connections are still open, and follow the master
    assert not ended_within(threads, 2 * ASK_INTERVAL)
    assert await config.alist_sessions("nobody") == []
    await config.aclose()
    assert ended_within(threads, FOLLOW_DEADLINE)


# -- the follower's bookkeeping ------------------------------------------------------------


class _Told:
    def __init__(self) -> None:
        self.heard: list[Any] = []

    def master_moved(self, address: Any) -> None:
        self.heard.append(address)


def test_the_follower_never_goes_back_to_an_older_configuration() -> None:
    follower = MasterFollower([], SERVICE, {})
    told = _Told()
    follower._listeners.append((weakref.WeakMethod(told.master_moved), None))  # no threads
    follower.known(("h", 1), 3)
    follower.known(("h", 2), 2)  # a sentinel that has not heard of the last failover
    assert follower.address == ("h", 1)
    follower.failover_started()
    assert follower.failing_over and follower.master(("h", 1)) is None
    follower.promoted(("h", 2))  # the failover's epoch is newer than any known
    assert not follower.failing_over and follower.master(None) == ("h", 2)
    follower.known(("h", 2), 4)  # the switch, with the failover's epoch: nothing new
    follower.known(("h", 1), 3)
    assert follower.address == ("h", 2)
    assert told.heard == [("h", 1), None, ("h", 2)]


def test_sentinel_events_about_another_service_are_ignored() -> None:
    def message(channel: str, data: str) -> dict[str, Any]:
        return {"type": "pmessage", "channel": channel.encode(), "data": data.encode()}

    promoted = "slave 10.0.0.2:6379 10.0.0.2 6379 @ mymaster 10.0.0.1 6379"
    assert _event(message("+promoted-slave", promoted), SERVICE) == (
        "+promoted-slave",
        promoted.split(),
    )
    assert (
        _event(message("+promoted-slave", promoted.replace("mymaster", "other")), SERVICE) is None
    )
    aborted = "master mymaster 10.0.0.1 6379"
    assert _event(message("-failover-abort-not-elected", aborted), SERVICE) is not None
    switched = "mymaster 10.0.0.1 6379 10.0.0.2 6379"
    assert _event(message("+switch-master", switched), SERVICE) is not None
    assert _event(message("+switch-master", "other 1 2 3 4"), SERVICE) is None
    assert _event({"type": "psubscribe", "channel": b"x", "data": 1}, SERVICE) is None
