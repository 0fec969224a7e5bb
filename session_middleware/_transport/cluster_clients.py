"""redis-py's Redis Cluster clients, made to keep serving through a cold start, a slot
migration and a master failover elsewhere in the cluster.

- Every failure is a RedisError (redis-py raises RedisClusterException, which is not one,
  when no node answers or a slot has no master).
- A script is routed by the keys it names, with no COMMAND GETKEYS round trip.
- A command that timed out is not sent again: it may have run (a login sent twice finds
  the session it replaces gone, and is refused after the app has answered). redis-py's
  cluster clients send it again by default; the standalone clients here never do.
- A command a migrating slot answers with ASK, MOVED or TRYAGAIN (or that exhausts
  redis-py's own redirections) was not run: it is sent again, after a short pause, until
  it runs or `retry_budget` seconds have passed since it was first sent. In a pipeline,
  only the commands refused are sent again, one by one, as redis-py does.
- The async client finds the cluster's layout once, under a lock, before its first command:
  redis-py 8.1 lets concurrent first commands open connections while the layout is being
  read, and some fail (AttributeError: 'NoneType' object has no attribute 'writelines');
  the client is left in a state where a later failover fails requests on healthy masters.
- The async client corrects its view of the cluster slot by slot, from each MOVED answer:
  redis-py's default also closes every connection on every fifth one, failing requests
  in flight, and connections being opened, to every master, as a slot migration ends.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio.cluster
import redis.cluster
from redis._parsers.commands import CommandPolicies, RequestPolicy, ResponsePolicy
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.policies import BasePolicyResolver, PolicyResolver, StaticPolicyResolver
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

# How long a command may keep being sent again while its slot moves, when no
# `redis_timeout` says otherwise.
DEFAULT_RETRY_BUDGET = 2.0

# Answers that mean the command was not run: ASK and MOVED (AskError covers both),
# TRYAGAIN, CLUSTERDOWN and redis-py's "TTL exhausted" (ClusterError covers both).
NOT_RUN: tuple[type[Exception], ...] = (AskError, TryAgainError, ClusterError)

_PAUSES = ExponentialWithJitterBackoff(cap=0.1, base=0.005)

# The failures after which redis-py's cluster clients send a command again: theirs
# (RedisCluster.ERRORS_ALLOW_RETRY), less the timeout.
SENT_AGAIN_AFTER = (RedisConnectionError, ClusterDownError, SlotNotCoveredError)


class Attempts:
    """The retry policy of one command (or one pipeline): which failures are sent again,
    and after how long a pause; past the deadline, the failure stands."""

    def __init__(self, budget: float) -> None:
        self._deadline = time.monotonic() + budget
        self._failures = 0

    def pause_after(self, error: Exception) -> float:
        """How long to wait before sending again; raises `error` when it must stand."""
        self._failures += 1
        pause = _PAUSES.compute(self._failures)
        if time.monotonic() + pause >= self._deadline:
            raise error
        return pause


def unavailable(error: RedisClusterException) -> RedisConnectionError:
    return RedisConnectionError(f"Redis Cluster unavailable: {error}")


_KEYED = CommandPolicies(
    request_policy=RequestPolicy.DEFAULT_KEYED, response_policy=ResponsePolicy.DEFAULT_KEYED
)


class _ScriptsByKeys(BasePolicyResolver):
    """Routes EVAL and EVALSHA by the keys they name, which redis-py reads locally."""

    def __init__(self, fallback: PolicyResolver | None = None) -> None:
        super().__init__({"core": {"eval": _KEYED, "evalsha": _KEYED}}, fallback)

    def with_fallback(self, fallback: PolicyResolver) -> PolicyResolver:
        return _ScriptsByKeys(fallback)


class SyncCluster(redis.cluster.RedisCluster):
    """redis.cluster.RedisCluster, as the module says."""

    ERRORS_ALLOW_RETRY = SENT_AGAIN_AFTER  # type: ignore[assignment]  # a shorter tuple

    def __init__(self, *, retry_budget: float = DEFAULT_RETRY_BUDGET, **options: Any) -> None:
        self.retry_budget = retry_budget  # set first: the constructor sends commands
        super().__init__(policy_resolver=_ScriptsByKeys(StaticPolicyResolver()), **options)

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        attempts = Attempts(self.retry_budget)
        while True:
            try:
                return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]
            except RedisClusterException as error:
                raise unavailable(error) from error
            except NOT_RUN as error:
                time.sleep(attempts.pause_after(error))

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        # The arguments redis-py's own pipeline() passes, and the policy resolver it omits.
        pipe = _SyncClusterPipeline(
            nodes_manager=self.nodes_manager,
            commands_parser=self.commands_parser,
            startup_nodes=self.nodes_manager.startup_nodes,  # type: ignore[arg-type]
            result_callbacks=self.result_callbacks,
            cluster_response_callbacks=self.cluster_response_callbacks,
            read_from_replicas=self.read_from_replicas,
            load_balancing_strategy=self.load_balancing_strategy,
            reinitialize_steps=self.reinitialize_steps,
            retry=self.retry,
            lock=self._lock,
            transaction=transaction,
            policy_resolver=self._policy_resolver,
            event_dispatcher=self._event_dispatcher,
        )
        # A command refused for a moving slot is sent again alone through this method,
        # within the retry budget, instead of redis-py's own.
        pipe.parent_execute_command = self.execute_command
        return pipe


class _SyncClusterPipeline(redis.cluster.ClusterPipeline):
    """A cluster pipeline whose cluster-level failures are raised as the session layer's
    Redis-unavailable error."""

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return list(super().execute(raise_on_error))
        except RedisClusterException as error:
            raise unavailable(error) from error


class AsyncCluster(redis.asyncio.cluster.RedisCluster):
    """redis.asyncio.cluster.RedisCluster, as the module says."""

    ERRORS_ALLOW_RETRY = SENT_AGAIN_AFTER  # type: ignore[assignment]  # a shorter tuple

    def __init__(self, *, retry_budget: float = DEFAULT_RETRY_BUDGET, **options: Any) -> None:
        self.retry_budget = retry_budget
        # Each MOVED answer corrects its slot; redis-py's default (reinitialize_steps=5)
        # also closes every connection on every fifth one, failing requests in flight and
        # connections being opened to every master.
        super().__init__(reinitialize_steps=0, **options)
        self._first_use = asyncio.Lock()
        self._ready = False

    async def ready(self) -> AsyncCluster:
        """Read the cluster's layout unless done already; concurrent callers wait for it."""
        if not self._ready:
            async with self._first_use:
                if not self._ready:
                    await self.initialize()
                    self._ready = True
        return self

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.ready()
        attempts = Attempts(self.retry_budget)
        while True:
            try:
                return await super().execute_command(*args, **kwargs)
            except RedisClusterException as error:
                raise unavailable(error) from error
            except NOT_RUN as error:
                await asyncio.sleep(attempts.pause_after(error))

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return _AsyncClusterPipeline(self, transaction)  # type: ignore[abstract]


class _AsyncClusterPipeline(redis.asyncio.cluster.ClusterPipeline):
    """Its commands refused for a moving slot are sent again one by one through the
    parent's execute_command, within its retry budget (redis-py's own way)."""

    cluster_client: AsyncCluster

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        await self.cluster_client.ready()
        try:
            return list(await super().execute(raise_on_error, allow_redirections))
        except RedisClusterException as error:
            raise unavailable(error) from error
