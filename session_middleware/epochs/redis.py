"""RedisEpochs: each user's epoch is a Redis key, beside their sessions by default."""

from __future__ import annotations

from typing import Any, Literal

from .._core.epoch_provider import (
    EpochContext,
    Interface,
    SessionRedis,
    StampedRecord,
    new_epoch,
    still_stamped,
)
from .._core.steps import RedisIO, RedisSource, Step
from .._protocol.durability import Replication
from .._protocol.key_layout import UserId
from .._protocol.lua_scripts import BumpIfCall, EnsureEpochCall
from .._protocol.wire import Command, text
from .._transport.clients import RedisClients
from ._faces import ProviderFaces


class RedisEpochs(ProviderFaces):
    """Epochs in Redis.

    With no arguments, the epoch lives on the session Redis under the user's hash tag, so
    the request path reads session and epoch in one round trip (Core.open). Given
    another Redis (``redis_url=`` or ``redis=``), a logged-in request costs one more round
    trip there.
    """

    def __init__(self, *, redis_url: str | None = None, redis: Any | None = None) -> None:
        self._own_url = redis_url
        self._own_client = redis
        # Whether the epochs live in the session Redis, beside the records.
        self.colocated = redis_url is None and redis is None
        self._context: EpochContext | None = None
        self._clients: SessionRedis | None = None

    @property
    def restamps(self) -> bool:
        return self.colocated  # BUMP_IF stamps the session beside the epoch

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
    def clients(self) -> SessionRedis:
        if self._clients is None:
            raise RuntimeError("RedisEpochs is not attached to a configuration yet")
        return self._clients

    # -- the request path ---------------------------------------------------------

    def cached_key(self, tag: str) -> str | None:
        return self.context.keys.epoch_key(tag) if self.colocated else None

    def resolve(self, user_id: UserId, tag: str, cached: str | None) -> Step[str | None]:
        if self.colocated:
            return cached
        (reply,) = yield self._io(("GET", self.context.keys.epoch_key(tag)))
        return text(reply)

    def login_mode(self) -> Literal["ensure", "given"]:
        return "ensure" if self.colocated else "given"

    def login_epoch(self, user_id: UserId) -> Step[str | None]:
        if self.colocated:
            return None
        (reply,) = yield self._io(self._ensure_command(user_id))
        return text(reply)

    def bump_if(
        self,
        user_id: UserId,
        tag: str,
        expected: str,
        session: StampedRecord | None = None,
        restamp: bool = False,
    ) -> Step[str | None]:
        """Durable like bump_epoch: a request's own epoch change is not undone by a failover."""
        epoch = new_epoch()
        if not self.colocated and not (yield from still_stamped(session)):
            return None
        check, others = self._bump_if_commands(
            user_id, tag, expected, epoch, session if self.colocated else None, restamp
        )
        (moved,) = yield self._durable(check)
        if not moved:
            return None
        if others:
            yield self._durable(*others)
        return epoch

    # -- the public API ---------------------------------------------------------------

    def read_epoch(self, user_id: UserId) -> Step[str | None]:
        keys = self.context.keys
        (reply,) = yield self._io(("GET", keys.epoch_key(keys.user_tag(user_id))))
        return text(reply)

    def bump_epoch(self, user_id: UserId) -> Step[str]:
        epoch = new_epoch()
        yield self._durable(*self._set_commands(user_id, epoch))
        return epoch

    def _runner_redis(self, method: str, is_async: bool) -> RedisSource:
        return self.clients

    def _durable(self, *commands: Command) -> RedisIO:
        """One round trip of epoch writes that returns once replicas have them, as the
        configuration's invalidate_wait_replicas asks (see _transport/replication.py)."""
        context = self.context
        topology = self.clients.topology
        replication = Replication(
            context.wait_replicas,
            context.wait_timeout_ms,
            context.wait_deadline,
            history_key=None if topology == "cluster" else context.keys.history_key(),
            follows_failover=topology != "standalone",
        )
        return RedisIO(commands, self.clients, replication)

    def _io(self, *commands: Command) -> RedisIO:
        """One round trip on the Redis holding the epochs."""
        return RedisIO(commands, self.clients)

    def _bump_if_commands(
        self,
        user_id: UserId,
        tag: str,
        expected: str,
        epoch: str,
        session: StampedRecord | None,
        restamp: bool = False,
    ) -> tuple[Command, list[Command]]:
        """The compare-and-set under `tag` (and of `session`, stored under the same tag),
        then the plain writes under the user's other tags."""
        key = self.context.keys.epoch_key(tag)
        check = BumpIfCall(
            epoch_key=key,
            session=None if session is None else session[0],
            expected=expected,
            epoch=epoch,
            epoch_ttl_ms=self.context.epoch_ttl_ms,
            stamp=None if session is None else session[1],
            restamp="1" if restamp and session is not None else None,
        ).command()
        others = [c for c in self._set_commands(user_id, epoch) if c[1] != key]
        return check, others

    def _set_commands(self, user_id: UserId, epoch: str) -> list[Command]:
        keys, ttl = self.context.keys, self.context.epoch_ttl_ms
        return [("SET", keys.epoch_key(tag), epoch, "PX", ttl) for tag in keys.user_tags(user_id)]

    def _ensure_command(self, user_id: UserId) -> Command:
        keys = self.context.keys
        key = keys.epoch_key(keys.user_tag(user_id))
        return EnsureEpochCall(
            epoch_key=key, candidate=new_epoch(), epoch_ttl_ms=self.context.epoch_ttl_ms
        ).command()
