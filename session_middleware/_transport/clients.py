"""The Redis clients of one configuration: one connection pool per face, reused.

A URL names one of three topologies (see `parse_redis_url`); a redis-py client given
as ``redis=`` may be any of them too: redis.Redis, redis.cluster.RedisCluster, a
Sentinel master from ``Sentinel(...).master_for(...)``, or their redis.asyncio twins.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.cluster
import redis.retry
import redis.sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisClusterException, RedisError

from ..errors import ConfigurationError
from .cluster_clients import DEFAULT_RETRY_BUDGET, AsyncCluster, SyncCluster, unavailable
from .multiplexed import MultiplexedRedis
from .round_trip import AsyncRedisClient
from .sentinel_follow import (
    Address,
    AsyncMasterConnection,
    AsyncMasterSSLConnection,
    MasterConnection,
    MasterFollower,
    MasterSSLConnection,
)
from .urls import RedisURL, Topology, parse_redis_url

# redis-py leaves these unannotated.
_SyncClusterNode: Any = redis.cluster.ClusterNode

# Connections per pool (per node on a cluster) of clients built from a URL; the
# `redis_max_connections` setting, which a `?max_connections=` in the URL overrides.
DEFAULT_MAX_CONNECTIONS = 100
# Everything a redis-py client raises when the store cannot serve a request. Cluster
# clients raise RedisClusterException, which is not a RedisError, when no node answers
# or a slot has no master; clients built here turn it into a ConnectionError.
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException)


def is_async_client(client: Any) -> bool:
    return asyncio.iscoroutinefunction(getattr(client, "execute_command", None))


def is_cluster_client(client: Any) -> bool:
    return isinstance(client, (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster))


def running_asyncio_loop() -> asyncio.AbstractEventLoop:
    """The running asyncio loop; a clear error under another event loop (trio), which the
    Redis client (redis.asyncio) cannot run on."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "session_middleware needs an asyncio event loop (redis.asyncio runs on asyncio "
            "only); trio and other loops are not supported: run the app on asyncio "
            "(uvicorn and hypercorn's default, anyio's backend='asyncio')"
        ) from None


def close_at_loop_shutdown(loop: asyncio.AbstractEventLoop, client: Any) -> None:
    """Close `client`'s connections when `loop` shuts down its async generators, as
    asyncio.run() and anyio do before closing a loop (a test client's loop per request,
    say), so that no connection is left open when the loop is gone."""
    holder = _shutdown_hooks.setdefault(loop, [])

    async def wait_for_shutdown() -> AsyncIterator[None]:
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    hook = wait_for_shutdown()
    holder.append(hook)  # loops keep only a weak reference to their generators
    loop.create_task(_start(hook))


async def ready_cluster(client: Any) -> None:
    """Have a cluster client read the cluster's layout before it serves (see
    cluster_clients); other clients need nothing."""
    if isinstance(client, AsyncCluster):
        await client.ready()
    elif is_cluster_client(client) and is_async_client(client):
        await client.initialize()


async def _start(hook: AsyncIterator[None]) -> None:
    await hook.__anext__()


_shutdown_hooks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Any]] = (
    weakref.WeakKeyDictionary()
)


class RedisClients:
    """A sync and an async client for one Redis, built from a URL or given.

    A URL-built async client is made per event loop (a redis.asyncio pool belongs to the
    loop that opened it), so tests and servers that run several loops just work.

    Clients built here fail fast: a timeout is not retried (a hung server costs one
    `timeout`, not a series of them), a broken connection is retried once at once (the
    server restarted, or Sentinel moved the master), and on one server a request waits
    at most `timeout` for a free connection when all `max_connections` are busy, then
    fails with a ConnectionError (the 503). Sentinel and Cluster pools hold
    `max_connections` too (per node on a cluster) and fail at once when all are busy.
    """

    def __init__(
        self,
        *,
        url: str | None,
        client: Any | None,
        timeout: float | None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        multiplex: bool = True,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("give exactly one of redis_url and redis")
        self.url = url
        self.target = parse_redis_url(url) if url is not None else None
        self._timeout = timeout
        self._max_connections = max_connections
        # The multiplexed connection speaks RESP2 whatever the URL's `protocol`, which
        # applies to the redis-py clients built beside it.
        self.multiplexed = (
            multiplex and self.target is not None and self.target.topology != "cluster"
        )
        self._sync: Any | None = None
        self._given_async: AsyncRedisClient | None = None
        if client is not None:
            if is_async_client(client):
                self._given_async = client
            else:
                self._sync = client
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncRedisClient] = (
            weakref.WeakKeyDictionary()
        )
        # redis-py pools beside the multiplexed connections, for commands that block theirs.
        self._pooled_by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncRedisClient
        ] = weakref.WeakKeyDictionary()
        # The last event loop's client, found again without a lookup in _by_loop.
        self._current: tuple[weakref.ref[asyncio.AbstractEventLoop], AsyncRedisClient] | None = None
        self._building = threading.Lock()
        # Where a Sentinel service's master is, for every client built here.
        self._follower: MasterFollower | None = None
        self._following = threading.Lock()

    @property
    def topology(self) -> Topology:
        if self.target is not None:
            return self.target.topology
        client = self._sync if self._sync is not None else self._given_async
        if is_cluster_client(client):
            return "cluster"
        pool = getattr(client, "connection_pool", None)
        sentinel_pools = (
            redis.sentinel.SentinelConnectionPool,
            redis.asyncio.sentinel.SentinelConnectionPool,
        )
        return "sentinel" if isinstance(pool, sentinel_pools) else "standalone"

    @property
    def can_sync(self) -> bool:
        return self.url is not None or self._sync is not None

    @property
    def can_async(self) -> bool:
        return self.url is not None or self._given_async is not None

    def sync(self) -> Any:
        if self._sync is None:
            if self.target is None:
                raise ConfigurationError(
                    "this needs a sync Redis client, but an async one was given: "
                    "pass redis_url=..., or use the a-prefixed async method"
                )
            with self._building:  # one client, however many threads ask at first
                if self._sync is None:
                    self._sync = self._build_sync(self.target)
        return self._sync

    def async_(self) -> AsyncRedisClient:
        loop = running_asyncio_loop()
        current = self._current
        if current is not None and current[0]() is loop:
            return current[1]
        client = self._async_client(self._by_loop, multiplexed=self.multiplexed)
        if self._given_async is None:
            self._current = (weakref.ref(loop), client)
        return client

    def async_blocking(self) -> AsyncRedisClient:
        """The client for commands that hold their connection until they are answered
        (WAIT): a redis-py pool, never the multiplexed connection, where every request
        queued behind such a command would wait for it."""
        return self._async_client(self._pooled_by_loop, multiplexed=False)

    def _async_client(
        self,
        by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncRedisClient],
        *,
        multiplexed: bool,
    ) -> AsyncRedisClient:
        if self._given_async is not None:
            return self._given_async
        if self.target is None:
            raise ConfigurationError(
                "this needs an async Redis client (redis.asyncio), but a sync one was given: "
                "pass redis_url=..., or a redis.asyncio client"
            )
        loop = running_asyncio_loop()
        client = by_loop.get(loop)
        if client is None:
            client = self._build_async(self.target, multiplexed=multiplexed)
            by_loop[loop] = client
            close_at_loop_shutdown(loop, client)
        return client

    def close(self) -> None:
        """Close the sync client: one built here from the URL is dropped (the next sync
        command builds another), one given is closed and kept (redis-py opens its
        connections again on its next command)."""
        if self._sync is not None:
            self._sync.close()
            if self.target is not None:
                self._sync = None
        self._stop_following_when_closed()

    async def aclose(self) -> None:
        """Close this event loop's async clients: built here from the URL, dropped; given,
        closed and kept."""
        if self._given_async is not None:
            await self._given_async.aclose()
            return
        if self.target is None:
            return
        loop = asyncio.get_running_loop()
        self._current = None
        for by_loop in (self._by_loop, self._pooled_by_loop):
            client = by_loop.pop(loop, None)
            if client is not None:
                await client.aclose()
        self._stop_following_when_closed()

    def _stop_following_when_closed(self) -> None:
        """Once no client built here is open (no sync one, none of any event loop), the
        threads following a Sentinel service's master end; a client built later starts
        them again."""
        still_open = self._sync is not None or self._by_loop or self._pooled_by_loop
        if self._follower is not None and not still_open:
            self._follower.close()

    # -- building -------------------------------------------------------------------

    def __repr__(self) -> str:
        where = "given client" if self.target is None else repr(self.target)
        return f"RedisClients({where})"

    def timeout_options(self) -> dict[str, Any]:
        """The socket timeouts of clients built here, as redis-py keyword arguments."""
        if self._timeout is None:
            return {}
        return {"socket_timeout": self._timeout, "socket_connect_timeout": self._timeout}

    def pool_options(self) -> dict[str, Any]:
        """Timeouts, pool size and protocol of clients built here; the URL's own options win.

        RESP2 unless the URL asks for ``protocol=3``: redis-py 8 would agree on RESP3, in
        which a hash comes as a map that hiredis builds field by field, at several times the
        cost of RESP2's flat list (a session's read is an HGETALL)."""
        return {"max_connections": self._max_connections, "protocol": 2, **self.timeout_options()}

    def cluster_options(self, target: RedisURL) -> dict[str, Any]:
        """A cluster client's options: a command refused while its slot moves is sent
        again for up to `timeout` (cluster_clients.Attempts)."""
        budget = DEFAULT_RETRY_BUDGET if self._timeout is None else self._timeout
        return {"retry_budget": budget, **self.pool_options(), **target.options}

    def _build_sync(self, target: RedisURL) -> Any:
        if target.topology == "cluster":
            nodes = [_SyncClusterNode(host, port) for host, port in target.nodes]
            try:
                return SyncCluster(
                    startup_nodes=nodes,
                    retry=redis.retry.Retry(NoBackoff(), 1),
                    **self.cluster_options(target),
                )
            except RedisClusterException as error:
                raise unavailable(error) from error
        retry = redis.retry.Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        if target.topology == "sentinel":
            return self._sentinel_master(
                redis.sentinel.Sentinel, _SentinelPool, redis.Redis, target, retry
            )
        # from_url lets the URL's query options win over these keywords.
        options = {"retry": retry, "timeout": self._timeout, **self.pool_options()}
        pool = redis.BlockingConnectionPool.from_url(target.url, **options)
        return redis.Redis.from_pool(pool)

    def _build_async(self, target: RedisURL, *, multiplexed: bool) -> Any:
        if multiplexed:
            return self._build_multiplexed(target)
        if target.topology == "cluster":
            nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in target.nodes]
            return AsyncCluster(
                startup_nodes=nodes,
                retry=redis.asyncio.retry.Retry(NoBackoff(), 1),
                **self.cluster_options(target),
            )
        retry = redis.asyncio.retry.Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        if target.topology == "sentinel":
            return self._sentinel_master(
                redis.asyncio.sentinel.Sentinel,
                _AsyncSentinelPool,
                redis.asyncio.Redis,
                target,
                retry,
            )
        options = {"retry": retry, "timeout": self._timeout, **self.pool_options()}
        pool = _WaitingPool.from_url(target.url, **options)
        return redis.asyncio.Redis.from_pool(pool)

    def _build_multiplexed(self, target: RedisURL) -> MultiplexedRedis:
        retry = redis.asyncio.retry.Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        if target.topology == "sentinel":
            master = self._sentinel_master(
                redis.asyncio.sentinel.Sentinel,
                _AsyncSentinelPool,
                redis.asyncio.Redis,
                target,
                retry,
            )
            pool = master.connection_pool
            multiplexed = MultiplexedRedis(
                pool.make_connection, timeout=self._timeout, on_close=master.aclose
            )
            self.follower(target).follow(multiplexed.master_moved, asyncio.get_running_loop())
            return multiplexed
        options = {"retry": retry, **self.timeout_options()}
        pool = redis.asyncio.ConnectionPool.from_url(target.url, **options)
        return MultiplexedRedis(pool.make_connection, timeout=self._timeout)

    def follower(self, target: RedisURL) -> MasterFollower:
        """The one follower of the Sentinel service's master (see sentinel_follow)."""
        with self._following:
            if self._follower is None:
                options = self._sentinel_options({**self.pool_options(), **target.options})
                service = str(target.service)
                self._follower = MasterFollower(list(target.nodes), service, options)
            return self._follower

    def _sentinel_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The sentinels' connection options, taken out of `options`."""
        sentinel_options = {k: v for k, v in options.items() if k.startswith("socket_")}
        for name in ("username", "password"):
            value = options.pop(f"sentinel_{name}", None)
            if value is not None:
                sentinel_options[name] = value
        if options.get("ssl"):
            sentinel_options["ssl"] = True
        return sentinel_options

    def _sentinel_master(
        self, sentinel_class: Any, pool_class: Any, redis_class: Any, target: RedisURL, retry: Any
    ) -> Any:
        options = {**self.pool_options(), **target.options}
        sentinel_options = self._sentinel_options(options)
        is_async = sentinel_class is redis.asyncio.sentinel.Sentinel
        ssl = bool(options.get("ssl"))
        if is_async:
            connection_class: Any = AsyncMasterSSLConnection if ssl else AsyncMasterConnection
        else:
            connection_class = MasterSSLConnection if ssl else MasterConnection
        follower = self.follower(target)
        sentinel = sentinel_class(list(target.nodes), sentinel_kwargs=sentinel_options)
        master = sentinel.master_for(
            target.service,
            redis_class=redis_class,
            connection_pool_class=pool_class,
            connection_class=connection_class,
            follower=follower,
            retry=retry,
            **options,
        )
        pool = master.connection_pool
        pool.follower = follower
        loop = asyncio.get_running_loop() if is_async else None
        follower.follow(pool.master_moved, loop)
        return master


class _WaitingPool(redis.asyncio.ConnectionPool):
    """redis-py's plain async pool, plus a wait bounded by `timeout` when it is full.

    While a connection is free this is the plain pool, at its cost. When all
    `max_connections` are busy, redis-py's plain pool raises MaxConnectionsError at once,
    so a burst a few milliseconds long gets 503s from a healthy Redis; its
    BlockingConnectionPool waits instead, but takes a lock and a timeout context on every
    command, free or not. Here only a request that finds the pool full waits, for a
    connection coming back, at most `timeout` seconds in all (None: no limit), and then
    gets MaxConnectionsError (a ConnectionError: the 503).
    """

    def __init__(self, *, timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout = timeout
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        while True:
            try:
                return await super().get_connection()  # type: ignore[no-untyped-call]
            except MaxConnectionsError:
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    raise MaxConnectionsError(
                        f"all {self.max_connections} connections stayed busy for "
                        f"{self.timeout} s (redis_max_connections)"
                    ) from None
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                # asyncio.wait, not wait_for: it never swallows a cancellation.
                await asyncio.wait((waiter,), timeout=left)
            except BaseException:
                if waiter.done():
                    self._wake_one()  # woken, then cancelled: the next one gets the wake-up
                raise
            finally:
                if not waiter.done():  # timed out (the next turn raises) or cancelled
                    waiter.cancel()
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)

    async def release(self, connection: Any) -> None:
        await super().release(connection)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break


class _SentinelPool(redis.sentinel.SentinelConnectionPool):
    """A Sentinel-managed pool that follows the master at once (sentinel_follow): when it
    moves, idle connections to the old one are closed, busy ones fail their command, and
    a connection given back is kept only if it is connected to the master now."""

    follower: MasterFollower | None = None

    def owns_connection(self, connection: Any) -> bool:
        if self.follower is not None:
            self.proxy.master_address = self.follower.master(self.proxy.master_address)
        return bool(super().owns_connection(connection))  # type: ignore[no-untyped-call]

    def master_moved(self, address: Address | None) -> None:
        self.proxy.master_address = address
        with self._lock:
            for connection in self._available_connections:
                if (connection.host, connection.port) != address:
                    connection.disconnect()
            busy = [c for c in self._in_use_connections if (c.host, c.port) != address]
        for connection in busy:
            connection.abort()


def _close_now(connection: Any) -> None:
    """Close an async connection without waiting for the close: redis-py's
    `_force_disconnect`, or, in releases before 8.2 that lack it, what their `disconnect()`
    does outside a task."""
    force = getattr(connection, "_force_disconnect", None)
    if force is not None:
        force()
        return
    connection._reset_himport_state()
    connection._parser.on_disconnect()
    connection.reset_should_reconnect()
    connection._close()


class _AsyncSentinelPool(redis.asyncio.sentinel.SentinelConnectionPool):
    """The async twin of _SentinelPool. redis-py's async pool gives a connection back
    without asking whether it still points at the master (`owns_connection`); here one
    that does not is closed first, so it reconnects to the master when next used."""

    follower: MasterFollower | None = None

    def owns_connection(self, connection: Any) -> bool:
        # redis-py's own would fail: its async pool has no owns_connection to extend.
        if self.follower is not None:
            self.master_address = self.follower.master(self.master_address)
        return bool(self.master_address == (connection.host, connection.port))

    def master_moved(self, address: Address | None) -> None:
        self.master_address = address
        idle: list[Any] = list(self._available_connections)
        busy: list[Any] = list(self._in_use_connections)
        for connection in idle:
            if (connection.host, connection.port) != address:
                _close_now(connection)
        for connection in busy:
            if (connection.host, connection.port) != address:
                connection.abort()

    async def release(self, connection: Any) -> None:
        if not self.owns_connection(connection):
            _close_now(connection)
        await super().release(connection)
