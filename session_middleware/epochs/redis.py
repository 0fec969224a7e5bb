"""RedisEpochs: each user's epoch is a Redis key, beside their sessions by default."""

from __future__ import annotations

from typing import Any, Literal

from .._redis.clients import RedisClients
from .._redis.key_layout import UserId
from .._redis.lua_scripts import BUMP_IF, ENSURE_EPOCH
from .._redis.replication import Replication, run_replicated_async, run_replicated_sync
from .._redis.round_trip import Command, run_async, run_sync, text
from .base import EpochContext, Interface, new_epoch


class RedisEpochs:
    """Epochs in Redis.

    With no arguments, the epoch lives on the session Redis under the user's hash tag, so
    the request path reads session and epoch with one MGET. Given another Redis
    (``redis_url=`` or ``redis=``), a logged-in request costs one more round trip there.
    """

    def __init__(self, *, redis_url: str | None = None, redis: Any | None = None) -> None:
        self._own_url = redis_url
        self._own_client = redis
        self._context: EpochContext | None = None
        self._clients: RedisClients | None = None

    @property
    def colocated(self) -> bool:
        return self._own_url is None and self._own_client is None

    def attach(self, context: EpochContext) -> None:
        self._context = context
        if self.colocated:
            self._clients = context.redis
        else:
            self._clients = RedisClients(
                url=self._own_url, client=self._own_client, timeout=context.redis_timeout
            )

    def check_interface(self, interface: Interface) -> None:
        return None

    @property
    def context(self) -> EpochContext:
        if self._context is None:
            raise RuntimeError("RedisEpochs is not attached to a configuration yet")
        return self._context

    @property
    def clients(self) -> RedisClients:
        if self._clients is None:
            raise RuntimeError("RedisEpochs is not attached to a configuration yet")
        return self._clients

    # -- the request path ---------------------------------------------------------

    def cached_key(self, tag: str) -> str | None:
        return self.context.keys.epoch_key(tag) if self.colocated else None

    def resolve(self, user_id: UserId, tag: str, cached: str | None) -> str | None:
        if self.colocated:
            return cached
        return text(self.clients.sync().execute_command("GET", self.context.keys.epoch_key(tag)))

    async def aresolve(self, user_id: UserId, tag: str, cached: str | None) -> str | None:
        if self.colocated:
            return cached
        reply = await self.clients.async_().execute_command("GET", self.context.keys.epoch_key(tag))
        return text(reply)

    def login_mode(self) -> Literal["ensure", "given"]:
        return "ensure" if self.colocated else "given"

    def login_epoch(self, user_id: UserId) -> str | None:
        if self.colocated:
            return None
        return text(run_sync(self.clients.sync(), [self._ensure_command(user_id)])[0])

    async def alogin_epoch(self, user_id: UserId) -> str | None:
        if self.colocated:
            return None
        replies = await run_async(self.clients.async_(), [self._ensure_command(user_id)])
        return text(replies[0])

    def bump_commands(self, user_id: UserId, epoch: str) -> list[Command] | None:
        return self._set_commands(user_id, epoch) if self.colocated else None

    # -- the public API ---------------------------------------------------------------

    def get(self, user_id: UserId) -> str | None:
        key = self.context.keys.epoch_key(self.context.keys.user_tag(user_id))
        return text(self.clients.sync().execute_command("GET", key))

    async def aget(self, user_id: UserId) -> str | None:
        key = self.context.keys.epoch_key(self.context.keys.user_tag(user_id))
        return text(await self.clients.async_().execute_command("GET", key))

    def bump(self, user_id: UserId) -> str:
        epoch = new_epoch()
        commands = self._set_commands(user_id, epoch)
        run_replicated_sync(self.clients.sync(), commands, self._replication())
        return epoch

    async def abump(self, user_id: UserId) -> str:
        epoch = new_epoch()
        commands = self._set_commands(user_id, epoch)
        await run_replicated_async(self.clients.async_(), commands, self._replication())
        return epoch

    def _replication(self) -> Replication:
        context = self.context
        return Replication(context.wait_replicas, context.wait_timeout_ms, context.wait_deadline)

    def bump_if(self, user_id: UserId, tag: str, expected: str) -> str | None:
        epoch = new_epoch()
        check, others = self._bump_if_commands(user_id, tag, expected, epoch)
        if not run_sync(self.clients.sync(), [check])[0]:
            return None
        if others:
            run_sync(self.clients.sync(), others)
        return epoch

    async def abump_if(self, user_id: UserId, tag: str, expected: str) -> str | None:
        epoch = new_epoch()
        check, others = self._bump_if_commands(user_id, tag, expected, epoch)
        if not (await run_async(self.clients.async_(), [check]))[0]:
            return None
        if others:
            await run_async(self.clients.async_(), others)
        return epoch

    def _bump_if_commands(
        self, user_id: UserId, tag: str, expected: str, epoch: str
    ) -> tuple[Command, list[Command]]:
        """The compare-and-set under `tag`, then the plain writes under the user's other tags."""
        key = self.context.keys.epoch_key(tag)
        check = ("EVAL", BUMP_IF, 1, key, expected, epoch, self.context.epoch_ttl_ms)
        others = [c for c in self._set_commands(user_id, epoch) if c[1] != key]
        return check, others

    def _set_commands(self, user_id: UserId, epoch: str) -> list[Command]:
        keys, ttl = self.context.keys, self.context.epoch_ttl_ms
        return [("SET", keys.epoch_key(tag), epoch, "PX", ttl) for tag in keys.user_tags(user_id)]

    def _ensure_command(self, user_id: UserId) -> Command:
        keys = self.context.keys
        key = keys.epoch_key(keys.user_tag(user_id))
        return ("EVAL", ENSURE_EPOCH, 1, key, new_epoch(), self.context.epoch_ttl_ms)
