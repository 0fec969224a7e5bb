"""The multiplexed connection (redis_multiplex, on by default) under faults: Redis killed,
frozen and restarted under concurrent load, replies split across reads, a cancellation
storm, 10,000 concurrent requests, the in-flight bound, a fork, and the connection
options (ACL user, SELECT, TLS, unix socket). Each runs on a redis-server of its own and
checks outcomes: only 200 or the 503, the right user, no acknowledged write lost."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import multiprocessing
import os
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from session_middleware import NotReplicated, sessions
from session_middleware._transport import multiplexed
from session_middleware._transport.clients import RedisClients
from session_middleware._transport.multiplexed import MultiplexedRedis

from .support import SECRET, new_prefix
from .support.apps import asgi_app
from .support.http import asgi_call
from .support.redis_servers import (
    HOST,
    REDIS_SERVER,
    RedisServer,
    Servers,
    free_port,
    server,
    server_has_tls,
    spawn,
    standalone,
    wait_until,
)
from .support.waiting import until

__all__ = ["server"]  # the fixture

pytestmark = pytest.mark.anyio

TIMEOUT = 0.5  # redis_timeout of every configuration here
DEVICES = 12
TEST_BOUND = 30.0  # any one phase; a hang fails the test instead of blocking the run
RECOVERY_DEADLINE = 10.0


# -- a raw ASGI client: 10,000 requests through httpx would cost more than the test ------


async def call(app: Any, path: str, cookie: str | None = None) -> tuple[int, Any, str | None]:
    """(status, JSON body or None, the cookie the response sets or None)."""
    cookies = [] if cookie is None else [f"session={cookie}".encode()]
    status, headers, body = await asgi_call(app, path, cookies)
    set_cookie = headers.get("set-cookie", "")
    new_cookie = set_cookie.split(";")[0].partition("=")[2] if set_cookie else None
    return status, body if headers.get("content-type") == "application/json" else None, new_cookie


@dataclass
class Device:
    """One logged-in browser writing a counter, one request at a time."""

    user: str
    cookie: str
    acked: int = 0  # the last value a 200 answered
    tried: int = 0  # the last value sent (a 503 leaves it uncertain)
    statuses: list[int] = field(default_factory=list)

    @classmethod
    async def login(cls, app: Any, user: str) -> Device:
        status, body, cookie = await call(app, f"/login?user={user}")
        assert status == 200 and body["user"] == user and cookie
        return cls(user, cookie)

    async def write(self, app: Any) -> int:
        self.tried += 1
        status, body, _ = await call(app, f"/set?key=n&value={self.tried}", self.cookie)
        self.statuses.append(status)
        assert status in (200, 503), (status, body)
        if status == 200:
            assert body["user"] == self.user
            assert body["data"]["n"] == str(self.tried)
            self.acked = self.tried
        return status

    async def check_kept(self, app: Any) -> None:
        """The session survived with the last acknowledged write, or a later one sent."""
        status, body, _ = await call(app, "/read", self.cookie)
        assert status == 200 and body["user"] == self.user
        assert self.acked <= int(body["data"].get("n", 0)) <= self.tried


async def keep_writing(app: Any, devices: list[Device], stop: asyncio.Event) -> None:
    async def one(device: Device) -> None:
        while not stop.is_set():
            await device.write(app)
            await asyncio.sleep(0.005)

    await asyncio.gather(*(one(device) for device in devices))


async def until_each_answered(devices: list[Device], status: int, what: str) -> None:
    """Until every device's write got `status` since this call, from the load's writes."""
    since = [len(device.statuses) for device in devices]
    await until(
        lambda: all(status in d.statuses[n:] for d, n in zip(devices, since, strict=True)),
        what,
        seconds=TEST_BOUND,
    )


async def until_all_served(app: Any, devices: list[Device]) -> None:
    """Every device answered 200 again, within RECOVERY_DEADLINE."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RECOVERY_DEADLINE
    waiting = list(devices)
    while waiting:
        assert loop.time() < deadline, "the store did not come back"
        waiting = [device for device in waiting if await device.write(app) != 200]
        await asyncio.sleep(0.05)


@pytest.fixture
def durable() -> Iterator[RedisServer]:
    """A private server whose every acknowledged write is on disk before the reply."""
    group, server = standalone(["--appendonly", "yes", "--appendfsync", "always"])
    try:
        yield server
    finally:
        group.stop()


@pytest.fixture
async def rig(durable: RedisServer) -> AsyncIterator[tuple[Any, MultiplexedRedis, list[Device]]]:
    config = sessions(
        secret_key=SECRET, redis_url=durable.url, redis_timeout=TIMEOUT, key_prefix=new_prefix()
    )
    app = config(asgi_app)
    devices = [await Device.login(app, f"user-{i}") for i in range(DEVICES)]
    client = config.redis.async_()
    assert isinstance(client, MultiplexedRedis)
    yield app, client, devices
    await config.aclose()


async def test_redis_killed_and_restarted_under_load_loses_no_acknowledged_write(
    durable: RedisServer, rig: tuple[Any, MultiplexedRedis, list[Device]]
) -> None:
    app, _client, devices = rig
    stop = asyncio.Event()
    load = asyncio.ensure_future(keep_writing(app, devices, stop))
    await until_each_answered(devices, 200, "every device writing")
    durable.kill()
    await until_each_answered(devices, 503, "the load to meet a dead Redis")
    await asyncio.to_thread(durable.start)
    await until_each_answered(devices, 200, "the load to meet the Redis restarted")
    stop.set()
    await asyncio.wait_for(load, TEST_BOUND)
    await asyncio.wait_for(until_all_served(app, devices), TEST_BOUND)
    statuses = [status for device in devices for status in device.statuses]
    assert 503 in statuses and 200 in statuses
    for device in devices:
        await device.check_kept(app)


async def test_redis_frozen_under_load_gets_the_503_then_recovers(
    durable: RedisServer, rig: tuple[Any, MultiplexedRedis, list[Device]]
) -> None:
    app, client, devices = rig
    stop = asyncio.Event()
    load = asyncio.ensure_future(keep_writing(app, devices, stop))
    await until_each_answered(devices, 200, "every device writing")
    opened = client.connections_opened
    durable.pause()
    try:
        # Every request on the frozen connection fails at its deadline, and so does each
        # one on a new connection: all 503.
        frozen = await asyncio.wait_for(
            asyncio.gather(*(call(app, "/read", device.cookie) for device in devices)), TEST_BOUND
        )
        assert {status for status, _, _ in frozen} == {503}
    finally:
        durable.resume()
    stop.set()
    await asyncio.wait_for(load, TEST_BOUND)
    await asyncio.wait_for(until_all_served(app, devices), TEST_BOUND)
    assert client.connections_opened > opened  # the stalled connection was reset
    for device in devices:
        await device.check_kept(app)


async def test_replies_split_across_reads_are_matched_to_their_callers(
    server: RedisServer,
) -> None:
    pieces = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, server.port)

        async def upstream() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
            up_writer.close()

        async def downstream() -> None:  # Redis's replies, a few bytes at a time
            nonlocal pieces
            rng = random.Random(7)
            while data := await up_reader.read(65536):
                while data:
                    size = rng.randint(1, 5)
                    writer.write(data[:size])
                    data = data[size:]
                    pieces += 1
                    await writer.drain()
                    await asyncio.sleep(0)
            writer.close()

        await asyncio.gather(upstream(), downstream(), return_exceptions=True)

    proxy = await asyncio.start_server(handle, HOST, 0)
    port = proxy.sockets[0].getsockname()[1]
    config = sessions(secret_key=SECRET, redis_url=f"redis://{HOST}:{port}/0", redis_timeout=5.0)
    app = config(asgi_app)
    try:
        devices = [await Device.login(app, f"split-{i}") for i in range(DEVICES)]
        for _ in range(3):
            statuses = await asyncio.wait_for(
                asyncio.gather(*(device.write(app) for device in devices)), TEST_BOUND
            )
            assert statuses == [200] * DEVICES
        assert pieces > 100
        assert config.redis.async_().connections_opened == 1
    finally:
        await config.aclose()
        proxy.close()


async def test_a_cancellation_storm_never_desynchronises_the_replies(server: RedisServer) -> None:
    clients = RedisClients(url=server.url, client=None, timeout=5.0)
    client = clients.async_()
    keys = [f"storm:{i}" for i in range(200)]
    await client.run([("MSET", *(part for key in keys for part in (key, key)))])
    rng = random.Random(11)

    async def get(key: str) -> None:
        assert await client.execute_command("GET", key) == key.encode()

    async def cancel_soon(task: asyncio.Future[None], turns: int) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()

    for _round in range(10):
        tasks = [asyncio.ensure_future(get(rng.choice(keys))) for _ in range(500)]
        cancellers = [asyncio.ensure_future(cancel_soon(t, rng.randint(0, 3))) for t in tasks[::2]]
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), TEST_BOUND)
        errors = [r for r in results if r is not None and not isinstance(r, asyncio.CancelledError)]
        assert errors == []
        await asyncio.gather(*cancellers)
        assert any(isinstance(r, asyncio.CancelledError) for r in results)
    for key in keys:  # every reply still goes to its own caller
        await get(key)
    assert client.connections_opened == 1
    await clients.aclose()


async def test_ten_thousand_concurrent_requests_share_one_connection(server: RedisServer) -> None:
    # A deadline far above the time this takes on a busy machine: the test is about
    # every reply reaching its own caller, on one connection.
    config = sessions(secret_key=SECRET, redis_url=server.url, redis_timeout=TEST_BOUND)
    app = config(asgi_app)
    devices = [await Device.login(app, f"many-{i}") for i in range(100)]
    replies = await asyncio.wait_for(
        asyncio.gather(*(call(app, "/read", devices[i % 100].cookie) for i in range(10_000))),
        2 * TEST_BOUND,
    )
    for index, (status, body, _) in enumerate(replies):
        assert status == 200 and body["user"] == devices[index % 100].user
    assert config.redis.async_().connections_opened == 1
    with server.client() as admin:
        assert int(admin.info("clients")["connected_clients"]) == 2  # ours and this one
    await config.aclose()


async def test_commands_past_the_in_flight_bound_are_refused_at_once(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(multiplexed, "MAX_IN_FLIGHT", 16)
    peak = 0
    send = multiplexed._Wire.send

    def counted(wire: Any, commands: Any) -> Any:
        nonlocal peak
        future = send(wire, commands)
        peak = max(peak, wire.in_flight)
        return future

    monkeypatch.setattr(multiplexed._Wire, "send", counted)
    clients = RedisClients(url=server.url, client=None, timeout=5.0)
    client = clients.async_()
    await client.execute_command("SET", "bound", "v")
    replies = await asyncio.wait_for(
        asyncio.gather(
            *(client.run([("GET", "bound"), ("GET", "bound")]) for _ in range(2000)),
            return_exceptions=True,
        ),
        TEST_BOUND,
    )
    served = [reply for reply in replies if reply == [b"v", b"v"]]
    refused = [reply for reply in replies if isinstance(reply, multiplexed.Overloaded)]
    assert len(served) == 8 and len(refused) == 2000 - 8, "the excess, at once"
    assert peak == 16
    # The connection was never reset; once answered, it takes commands again.
    assert await client.run([("GET", "bound")]) == [b"v"]
    assert client.connections_opened == 1
    await clients.aclose()


async def test_error_replies_raise_and_a_flushed_script_is_sent_again(server: RedisServer) -> None:
    config = sessions(secret_key=SECRET, redis_url=server.url, redis_timeout=5.0)
    app = config(asgi_app)
    device = await Device.login(app, "scripts")
    client = config.redis.async_()
    await client.execute_command("SET", "plain", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await client.execute_command("HGETALL", "plain")
    with server.client() as admin:
        admin.script_flush()
        evals = admin.info("commandstats").get("cmdstat_eval", {}).get("calls", 0)
        assert await device.write(app) == 200  # NOSCRIPT: each script sent again whole
        reloaded = admin.info("commandstats")["cmdstat_eval"]["calls"]
        assert reloaded > evals
        assert await device.write(app) == 200  # by its SHA again
        assert admin.info("commandstats")["cmdstat_eval"]["calls"] == reloaded
    assert client.connections_opened == 1
    await config.aclose()


def _child_client_id(client: MultiplexedRedis, out: Any) -> None:
    out.put(asyncio.run(client.execute_command("CLIENT", "ID")))


# Python 3.12 and later warn at any fork() of a process that runs threads: the modules run
# before this one leave library threads running (asgiref's executor, from the Django
# tests), which the forked child never uses.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_opens_a_connection_of_its_own(server: RedisServer) -> None:
    loop = asyncio.new_event_loop()
    try:
        clients = RedisClients(url=server.url, client=None, timeout=5.0)

        async def ours() -> Any:
            return clients.async_()

        client = loop.run_until_complete(ours())
        parent_id = loop.run_until_complete(client.execute_command("CLIENT", "ID"))
        context = multiprocessing.get_context("fork")
        out = context.Queue()
        child = context.Process(target=_child_client_id, args=(client, out))
        child.start()
        child_id = out.get(timeout=TEST_BOUND)
        child.join(TEST_BOUND)
        assert child.exitcode == 0 and child_id != parent_id
        # The parent's connection is untouched by the child.
        assert loop.run_until_complete(client.execute_command("CLIENT", "ID")) == parent_id
        assert client.connections_opened == 1
        loop.run_until_complete(client.aclose())
    finally:
        loop.close()


def test_each_event_loop_finds_its_own_connection_again(server: RedisServer) -> None:
    """Two loops alive at once, used in turn: each is answered on the connection it
    opened, never on the other's, and a loop that ended leaves its connection to none."""
    clients = RedisClients(url=server.url, client=None, timeout=5.0)
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()

    async def connection_id() -> tuple[Any, int]:
        client = clients.async_()
        return client, await client.execute_command("CLIENT", "ID")

    try:
        (a, a_id), (b, b_id) = (
            loop.run_until_complete(connection_id()) for loop in (first, second)
        )
        assert a is not b and a_id != b_id
        for _ in range(2):
            assert first.run_until_complete(connection_id()) == (a, a_id)
            assert second.run_until_complete(connection_id()) == (b, b_id)
        second.run_until_complete(clients.aclose())  # the loop last used
        again, again_id = second.run_until_complete(connection_id())
        assert again is not b and again_id not in (a_id, b_id)
        first.run_until_complete(clients.aclose())
        second.run_until_complete(clients.aclose())
    finally:
        first.close()
        second.close()
    later, _ = asyncio.run(connection_id_then_close(clients))
    assert later not in (a, b, again)


async def connection_id_then_close(clients: RedisClients) -> tuple[Any, int]:
    client = clients.async_()
    try:
        return client, await client.execute_command("CLIENT", "ID")
    finally:
        await clients.aclose()


# -- connection options --------------------------------------------------------------


async def story(url: str, **settings: Any) -> MultiplexedRedis:
    """Log in, write, read, on a config built from `url`; return its connection."""
    config = sessions(secret_key=SECRET, redis_url=url, redis_timeout=5.0, **settings)
    app = config(asgi_app)
    device = await Device.login(app, "alice")
    assert await device.write(app) == 200
    await device.check_kept(app)
    client = config.redis.async_()
    assert isinstance(client, MultiplexedRedis) and client.connections_opened == 1
    await config.aclose()
    return client


async def test_an_acl_user_and_a_database_number(server: RedisServer) -> None:
    prefix = new_prefix()
    with server.client() as admin:
        admin.execute_command("ACL", "SETUSER", "app", "on", ">app-pass", "~*", "&*", "+@all")
        await story(f"redis://app:app-pass@{HOST}:{server.port}/3", key_prefix=prefix)
        assert admin.keys(f"{prefix}*") == []
    with server.client(db=3) as db3:
        assert db3.keys(f"{prefix}*")
    # The wrong password is the 503, never a 500.
    config = sessions(secret_key=SECRET, redis_url=f"redis://app:wrong@{HOST}:{server.port}/3")
    status, _, _ = await call(config(asgi_app), "/login?user=alice")
    assert status == 503


def _clients(admin: Any) -> list[str]:
    listing = admin.execute_command("CLIENT", "LIST")
    text = listing.decode() if isinstance(listing, bytes) else str(listing)
    return text.splitlines()


async def test_the_connection_authenticates_as_the_acl_user(server: RedisServer) -> None:
    with server.client() as admin:
        admin.execute_command("ACL", "SETUSER", "app", "on", ">app-pass", "~*", "&*", "+@all")
        clients = RedisClients(
            url=f"redis://app:app-pass@{HOST}:{server.port}/3", client=None, timeout=5.0
        )
        client = clients.async_()
        client_id = await client.execute_command("CLIENT", "ID")
        (line,) = [line for line in _clients(admin) if f"id={client_id} " in line]
        assert " user=app " in line and " db=3 " in line
        await clients.aclose()


async def test_a_unix_socket(tmp_path: Path) -> None:
    socket_path = Path("/tmp") / f"sm-mux-{os.getpid()}-{free_port()}.sock"
    group = Servers("unix")
    try:
        server = group.add("redis", ["--unixsocket", str(socket_path), "--unixsocketperm", "700"])
        await asyncio.to_thread(server.start)
        await story(f"unix://{socket_path}?db=0", key_prefix=new_prefix())
    finally:
        group.stop()
        socket_path.unlink(missing_ok=True)


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1: (ca, cert, key) files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sm test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        # Python 3.13 verifies strictly (VERIFY_X509_STRICT), as RFC 5280 asks: a CA with
        # its key usage and key identifier, a certificate naming the key that signed it.
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


async def test_tls_with_a_verified_certificate(tmp_path: Path) -> None:
    if not server_has_tls():
        pytest.skip(f"{REDIS_SERVER} was built without TLS")
    ca, cert, key = _certificates(tmp_path)
    port = free_port()
    process = spawn(
        [
            REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", HOST,
            "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
            "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
        ],
        tmp_path / "server.log",
    )  # fmt: skip
    try:
        admin = redis.Redis(host=HOST, port=port, ssl=True, ssl_ca_certs=str(ca))
        wait_until(admin.ping, 10.0, "redis-server with TLS")
        url = f"rediss://{HOST}:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
        await story(url, key_prefix=new_prefix())
        admin.close()
    finally:
        process.kill()
        process.wait(10)


# -- the setting -----------------------------------------------------------------------


async def test_the_setting_turns_it_off_and_a_cluster_or_given_client_never_uses_it(
    server: RedisServer,
) -> None:
    off = sessions(secret_key=SECRET, redis_url=server.url, redis_multiplex=False)
    assert isinstance(off.redis.async_(), redis.asyncio.Redis)
    device = await Device.login(off(asgi_app), "off")
    assert await device.write(off(asgi_app)) == 200
    await off.aclose()
    assert not RedisClients(url="redis+cluster://127.0.0.1:1", client=None, timeout=1).multiplexed
    given: Any = redis.asyncio.Redis.from_url(server.url)
    assert not RedisClients(url=None, client=given, timeout=1).multiplexed
    await given.aclose()
    # A URL's protocol is for redis-py's clients; the multiplexed connection speaks RESP2.
    assert RedisClients(url=server.url + "?protocol=3", client=None, timeout=1).multiplexed


async def test_a_master_that_became_a_replica_is_left_for_a_new_connection() -> None:
    group = Servers("demoted")
    try:
        master = group.add("master").start()
        demoted = group.add("demoted").start()
        clients = RedisClients(url=demoted.url, client=None, timeout=5.0)
        client = clients.async_()
        assert await client.execute_command("SET", "demoted", "1") is True
        with demoted.client() as admin:
            admin.replicaof(HOST, master.port)
        with pytest.raises(redis.ReadOnlyError):
            await client.execute_command("SET", "demoted", "2")
        await client.execute_command("PING")  # on a connection opened again
        assert client.connections_opened == 2
        await clients.aclose()
    finally:
        group.stop()


async def test_a_command_that_cannot_be_sent_leaves_the_replies_in_order(
    server: RedisServer,
) -> None:
    clients = RedisClients(url=server.url, client=None, timeout=5.0)
    client = clients.async_()
    await client.execute_command("SET", "order", "kept")
    with pytest.raises(TypeError):
        await client.execute_command("SET", "order", None)
    assert await client.execute_command("GET", "order") == b"kept"
    assert client.connections_opened == 1
    await clients.aclose()


@pytest.fixture
def master_with_frozen_replica() -> Iterator[RedisServer]:
    """A master whose one replica is connected but frozen: a WAIT on it runs to its
    timeout."""
    group = Servers("frozen-replica")
    try:
        master = group.add("master").start()
        replica = group.add("replica", ["--replicaof", HOST, str(master.port)]).start()
        wait_until(
            lambda: master.client().info("replication")["connected_slaves"] == 1,
            10,
            "the replica to connect",
        )
        replica.pause()
        yield master
    finally:
        group.stop()


async def test_an_invalidation_waiting_for_replicas_holds_up_no_request(
    master_with_frozen_replica: RedisServer,
) -> None:
    """WAIT holds its connection until the replicas answer: sent on the connection the
    requests share, every read queued behind it would wait as long. It goes through
    redis-py's pool instead, so the reads are all answered while it still waits."""
    master = master_with_frozen_replica
    config = sessions(
        secret_key=SECRET,
        redis_url=master.url,
        redis_timeout=5.0,
        invalidate_wait_timeout_ms=2000,
        invalidate_deadline=0.1,
        key_prefix=new_prefix(),
    )
    app = config(asgi_app)
    reader = await Device.login(app, "reader")
    await call(app, "/login?user=admin")
    finished: list[str] = []

    async def invalidate() -> None:
        with contextlib.suppress(NotReplicated):
            await config.ainvalidate_user("admin")
        finished.append("invalidation")

    async def read() -> None:
        status, body, _ = await call(app, "/read", reader.cookie)
        assert status == 200 and body["user"] == "reader"
        finished.append("read")

    invalidation = asyncio.create_task(invalidate())

    def waiting() -> bool:
        clients = master.client().client_list()
        return any(client["cmd"] == "wait" for client in clients)

    await asyncio.wait_for(asyncio.to_thread(wait_until, waiting, 5, "the WAIT"), TEST_BOUND)
    await asyncio.wait_for(asyncio.gather(*(read() for _ in range(20))), TEST_BOUND)
    await asyncio.wait_for(invalidation, TEST_BOUND)
    assert finished == ["read"] * 20 + ["invalidation"]
    await config.aclose()
