"""Redis Cluster: a real cluster of three masters and three replicas on loopback.

The full session story runs on it through a Starlette app (redis.asyncio cluster client)
and a WSGI app (sync cluster client), each built from a cluster URL or given; a killed
master fails over to its replica while requests run, and the apps recover by themselves.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio.cluster
import redis.cluster

from session_middleware import ConfigurationError, SessionConfig, sessions
from session_middleware._protocol import lua_scripts as scripts_module
from session_middleware._protocol.durability import Replication
from session_middleware._transport.clients import RedisClients, parse_redis_url
from session_middleware._transport.replication import (
    run_replicated_async,
    run_replicated_sync,
)

from .support import SECRET, new_prefix
from .support.counting import SCRIPT_NAMES
from .support.http import wsgi_client_of
from .support.load_app import starlette_app
from .support.redis_servers import HOST, ClusterServers, free_port
from .support.sql import SYNC_BACKENDS, flask_app, sync_users
from .support.stories import BASE, Browser, browsers_for, full_story

ONE_REPLICA = Replication(wanted=1, timeout_ms=2000, deadline=5.0)
FAILOVER_DEADLINE = 20.0
scripts_source = inspect.getsource(scripts_module)


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterServers]:
    servers = ClusterServers(masters=3, replicas=1).start()
    try:
        yield servers
    finally:
        servers.stop()


def _config(redis_url: str | None = None, client: Any = None) -> SessionConfig:
    return sessions(
        secret_key=SECRET,
        redis_url=redis_url,
        redis=client,
        key_prefix=new_prefix(),
        redis_timeout=0.5,
    )


@pytest.fixture
async def given_async(cluster: ClusterServers) -> AsyncIterator[Any]:
    client = redis.asyncio.cluster.RedisCluster(host=HOST, port=cluster.servers[0].port)
    yield client
    await client.aclose()


# -- the URL ---------------------------------------------------------------------------


def test_cluster_url_names_start_up_nodes_and_options() -> None:
    target = parse_redis_url(
        "redis+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2,[::1]:7002?socket_timeout=0.25"
    )
    assert target.topology == "cluster"
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert target.options == {"username": "app", "password": "s@cret", "socket_timeout": 0.25}
    assert parse_redis_url("rediss+cluster://h:1").options == {"ssl": True}


@pytest.mark.parametrize(
    "url",
    ["redis+cluster://h:1/3", "redis+cluster://h:port", "redis+cluster://h:1?socket_timeout=x"],
)
def test_bad_cluster_urls_are_refused_at_configuration(url: str) -> None:
    with pytest.raises(ConfigurationError):
        sessions(secret_key=SECRET, redis_url=url)


def test_cluster_clients_are_recognised(cluster: ClusterServers) -> None:
    sync_client = redis.cluster.RedisCluster(host=HOST, port=cluster.servers[0].port)
    async_client = redis.asyncio.cluster.RedisCluster(host=HOST, port=cluster.servers[0].port)
    try:
        given_sync = RedisClients(url=None, client=sync_client, timeout=None)
        given_async = RedisClients(url=None, client=async_client, timeout=None)
        assert (given_sync.can_sync, given_sync.can_async) == (True, False)
        assert (given_async.can_sync, given_async.can_async) == (False, True)
        assert given_sync.topology == given_async.topology == "cluster"
        assert RedisClients(url=cluster.url, client=None, timeout=None).topology == "cluster"
    finally:
        sync_client.close()


# -- the story -------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("face", ["asgi", "wsgi"])
async def test_full_story_on_a_cluster_url(cluster: ClusterServers, face: str) -> None:
    config = _config(cluster.url)
    await full_story(browsers_for(config, face))
    config.redis.close()
    await config.redis.aclose()


@pytest.mark.anyio
async def test_full_story_on_a_given_async_cluster_client(given_async: Any) -> None:
    await full_story(browsers_for(_config(client=given_async), "asgi"))


@pytest.mark.anyio
async def test_full_story_on_a_given_sync_cluster_client(cluster: ClusterServers) -> None:
    client = redis.cluster.RedisCluster(host=HOST, port=cluster.servers[1].port)
    try:
        await full_story(browsers_for(_config(client=client), "wsgi"))
    finally:
        client.close()


@pytest.mark.anyio
@pytest.mark.parametrize("face", ["asgi", "wsgi"])
async def test_a_request_sends_the_core_commands_and_nothing_else(
    cluster: ClusterServers, face: str
) -> None:
    config = _config(cluster.url)
    browser = browsers_for(config, face)()
    await browser.ok("POST", "/hit")  # an anonymous session, stored
    await browser.ok("GET", "/me")  # the client has learnt the slots by now
    cluster.load_scripts(body for body in SCRIPT_NAMES if len(body) > 40)

    before = cluster.command_calls()
    # The read (HGETALL, GET: not told apart from the login script's own); DEL of the old
    # record + the login.
    await browser.ok("POST", "/login?user=reader")
    assert _sent(before, cluster.command_calls()) == {"evalsha": 1, "del": 1}

    before = cluster.command_calls()
    assert (await browser.ok("GET", "/me"))["user"] == "reader"
    assert _sent(before, cluster.command_calls()) == {"hgetall": 1, "get": 1}  # the read

    before = cluster.command_calls()
    assert (await browser.ok("POST", "/hit"))["count"] == 1
    # The read (HGETALL, GET: not told apart from the write script's own), the write.
    assert _sent(before, cluster.command_calls()) == {"evalsha": 1}
    await browser.close()
    config.redis.close()
    await config.redis.aclose()


@pytest.mark.anyio
async def test_every_key_of_a_user_lives_in_one_slot(cluster: ClusterServers) -> None:
    config = _config(cluster.url)
    new_browser = browsers_for(config, "asgi")
    devices = [new_browser() for _ in range(3)]
    for device in devices:
        await device.ok("POST", "/login?user=slotted")
    await devices[0].ok("GET", "/sessions")

    keys = _keys_under(cluster, config.keys.prefix)
    assert len(keys) == 5  # three records, the epoch, the index
    slots = {key: _slot(cluster, key) for key in keys}
    assert len(set(slots.values())) == 1, slots
    for device in devices:
        await device.close()
    await config.redis.aclose()


def test_logout_others_with_sql_epochs_restamps_on_a_cluster(
    cluster: ClusterServers, tmp_path: Path
) -> None:
    """COPY_AND_RESTAMP touches the copy and the record under one hash tag; the copies
    under an older secret key's tag, in another slot, go in the same round trip."""
    with sync_users(SYNC_BACKENDS[0], tmp_path) as (epochs, table):
        secret_keys = [SECRET, "an-older-key-0123456789abcdefghijklmnopq"]
        config = sessions(secret_key=secret_keys, redis_url=cluster.url,
                          key_prefix=new_prefix(), epochs=epochs)  # fmt: skip
        app = flask_app(config, epochs, table, "session")
        with wsgi_client_of(app) as phone, wsgi_client_of(app) as laptop:
            for device in (phone, laptop):
                assert device.post("/login/1").status_code == 200
            assert phone.post("/others").status_code == 200
            assert phone.get("/me").json() == {"user": 1, "rejected": None}
            assert laptop.get("/me").json() == {"user": None, "rejected": "epoch"}
            tags = config.keys.user_tags(1)
            copies = [config.redis.sync().get(config.keys.epoch_key(tag)) for tag in tags]
            assert len({_slot(cluster, config.keys.epoch_key(tag)) for tag in tags}) == 2
            assert copies == [epochs.get(1).encode()] * 2
        config.redis.close()


@pytest.mark.anyio
async def test_a_write_waited_for_reached_the_replica_of_each_master(
    cluster: ClusterServers,
) -> None:
    keys = [f"{new_prefix()}{{{n}}}:e" for n in range(12)]
    masters = {cluster.master_of(key).port for key in keys}
    assert len(masters) == 3  # the batch spans every master
    commands = [("SET", key, f"v{n}") for n, key in enumerate(keys)]

    sync_client = RedisClients(url=cluster.url, client=None, timeout=1.0).sync()
    assert run_replicated_sync(sync_client, commands, ONE_REPLICA) == [True] * len(keys)
    _assert_on_replicas(cluster, {key: f"v{n}" for n, key in enumerate(keys)})

    async_client = redis.asyncio.cluster.RedisCluster(host=HOST, port=cluster.servers[0].port)
    commands = [("SET", key, f"w{n}") for n, key in enumerate(keys)]
    assert await run_replicated_async(async_client, commands, ONE_REPLICA) == [True] * len(keys)
    _assert_on_replicas(cluster, {key: f"w{n}" for n, key in enumerate(keys)})
    await async_client.aclose()
    sync_client.close()


# -- outages ---------------------------------------------------------------------------


# Counts its runs, then holds its node past the client's timeout: the reply comes too late,
# after the script ran.
COUNT_THEN_HOLD = """
redis.call('INCR', KEYS[1])
local t = redis.call('TIME')
local hold_until = t[1] * 1000000 + t[2] + tonumber(ARGV[1]) * 1000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= hold_until
return 1
"""


@pytest.mark.anyio
@pytest.mark.parametrize("face", ["sync", "async"])
async def test_a_command_that_timed_out_is_not_sent_again(
    cluster: ClusterServers, face: str
) -> None:
    """It may have run, as here: sent again, a login's rotation would find the session it
    replaces gone and be refused, while the app had already answered as logged in."""
    config = _config(cluster.url)
    key = f"{config.keys.prefix}runs"
    # Held past redis_timeout, and not twice as long: a command sent again runs after it.
    command = ("EVAL", COUNT_THEN_HOLD, 1, key, 700)
    config.redis.sync().ping()
    await config.redis.async_().ping()
    with pytest.raises(redis.TimeoutError):
        if face == "sync":
            config.redis.sync().execute_command(*command)
        else:
            await config.redis.async_().execute_command(*command)
    node = cluster.master_of_slot(_slot(cluster, key))
    with node.client(socket_timeout=10) as client:
        client.get(key)  # once the script has run; one sent again runs before the next GET
        assert client.get(key) == b"1"
    config.redis.close()
    await config.redis.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("face", ["asgi", "wsgi"])
async def test_an_unreachable_cluster_url_answers_503(cluster: ClusterServers, face: str) -> None:
    reachable = browsers_for(_config(cluster.url), face)()
    await reachable.ok("POST", "/login?user=somebody")
    cookies = dict(reachable.client.cookies)
    await reachable.close()

    browser = browsers_for(_config(f"redis+cluster://{HOST}:{free_port()}"), face)()
    browser.client.cookies.update(cookies)
    for method, path in [("GET", "/me"), ("POST", "/login?user=nobody"), ("GET", "/me")]:
        status, _ = await browser.call(method, path)
        assert status == 503
    assert dict(browser.client.cookies) == cookies
    await browser.close()


@pytest.mark.anyio
async def test_a_given_cluster_client_of_an_unreachable_cluster_answers_503() -> None:
    client = redis.asyncio.cluster.RedisCluster(host=HOST, port=free_port())
    app = starlette_app(_config(client=client))
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        assert (await http.post("/login?user=nobody")).status_code == 503


@pytest.mark.anyio
async def test_a_master_failover_answers_503_meanwhile_and_recovers_alone(
    cluster: ClusterServers,
) -> None:
    config = _config(cluster.url)
    asgi, wsgi = browsers_for(config, "asgi"), browsers_for(config, "wsgi")
    alice_asgi, alice_wsgi, mallory = asgi(), wsgi(), asgi()
    await alice_asgi.ok("POST", "/login?user=alice")
    await alice_wsgi.ok("POST", "/login?user=alice")
    await mallory.ok("POST", "/login?user=alice")
    await mallory.ok("POST", "/logout_others")  # alice's devices are logged out...
    await alice_asgi.ok("POST", "/login?user=alice")  # ...and log in again
    await alice_wsgi.ok("POST", "/login?user=alice")
    stolen = dict(mallory.client.cookies)
    await alice_asgi.ok("POST", "/invalidate?user=alice")  # mallory's session is dead
    await alice_asgi.ok("POST", "/login?user=alice")
    await alice_wsgi.ok("POST", "/login?user=alice")
    cluster.wait_replicated()

    victim = cluster.master_of(_epoch_key(config, "alice"))
    elsewhere = (f"bob-{n}" for n in range(100))
    bob = next(u for u in elsewhere if cluster.master_of(_epoch_key(config, u)) is not victim)
    bystanders = [asgi(), wsgi()]  # bob's keys live on another master
    for browser in bystanders:
        await browser.ok("POST", f"/login?user={bob}")
    victim.kill()
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + FAILOVER_DEADLINE
    recovered = False
    while not recovered:
        assert time.monotonic() < deadline, f"no recovery after the failover: {statuses}"
        recovered = True
        for browser in (alice_asgi, alice_wsgi):
            status, body = await _served(browser, statuses)
            if status == 200:
                assert body is not None and body["user"] == "alice"
            recovered = recovered and status == 200
        mallory.client.cookies.clear()
        mallory.client.cookies.update(stolen)
        status, body = await _served(mallory, statuses)
        assert status == 503 or (body is not None and body["user"] is None)
        for browser in bystanders:  # with cluster-require-full-coverage no
            assert (await browser.ok("GET", "/me"))["user"] == bob
            await browser.ok("POST", "/hit")
        await asyncio.sleep(0.05)
    assert statuses.get(503, 0) > 0  # the outage was seen, and answered as defined

    assert (await alice_asgi.ok("POST", "/hit"))["count"] == 1
    assert (await alice_wsgi.ok("POST", "/hit"))["count"] == 1
    await full_story(asgi)
    await full_story(wsgi)
    for browser in (alice_asgi, alice_wsgi, mallory, *bystanders):
        await browser.close()
    config.redis.close()
    await config.redis.aclose()
    victim.start()
    cluster.wait_healthy()


def _epoch_key(config: SessionConfig, user: str) -> str:
    return config.keys.epoch_key(config.keys.user_tag(user))


async def _served(browser: Browser, statuses: dict[int, int]) -> tuple[int, Any]:
    """One GET /me; anything but a 200 or the defined 503 fails the test."""
    client = browser.client
    before = dict(client.cookies)
    status, body = await browser.call("GET", "/me")
    statuses[status] = statuses.get(status, 0) + 1
    assert status in (200, 503), (status, body)
    if status == 503:
        assert dict(client.cookies) == before  # an outage never clears a cookie
    return status, body


# Commands the scripts run inside an EVAL: the server counts them too.
_IN_SCRIPTS = {name.lower() for name in re.findall(r"redis\.call\('(\w+)'", scripts_source)}


def _sent(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands sent by clients between two counts (a DEL outside a script included); when
    a script ran, the commands scripts run are left out, whoever sent them."""
    changed = {name: after[name] - before.get(name, 0) for name in after}
    sent = {name: count for name, count in changed.items() if count}
    if "evalsha" in sent or "eval" in sent:
        for name in _IN_SCRIPTS - {"del"}:
            sent.pop(name, None)
    return sent


def _keys_under(cluster: ClusterServers, prefix: str) -> list[str]:
    keys: list[str] = []
    for server in cluster.live():
        with server.client(decode_responses=True) as client:
            if client.info("replication").get("role") == "master":
                keys += client.scan_iter(match=prefix + "*", count=1000)
    return keys


def _slot(cluster: ClusterServers, key: str) -> int:
    with cluster.live()[0].client() as client:
        return int(client.execute_command("CLUSTER", "KEYSLOT", key))


def _assert_on_replicas(cluster: ClusterServers, expected: dict[str, str]) -> None:
    """Read every key from the replica of its master, right away (no waiting)."""
    for key, value in expected.items():
        master = cluster.master_of(key)
        with master.client(decode_responses=True) as client:
            replica_port = client.info("replication")["slave0"]["port"]
        with redis.Redis(host=HOST, port=replica_port, decode_responses=True) as replica:
            replica.execute_command("READONLY")
            assert replica.get(key) == value, (key, replica_port)
