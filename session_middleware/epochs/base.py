"""What an epoch provider is, and what every provider shares."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from .._redis.clients import RedisClients
from .._redis.key_layout import KeySpace, UserId
from .._redis.round_trip import Command

Interface = Literal["asgi", "wsgi"]


def new_epoch() -> str:
    """A random epoch: 128 bits from `secrets`, so a value never comes back."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class EpochContext:
    """What a provider is given when a configuration adopts it."""

    keys: KeySpace
    redis: RedisClients
    epoch_ttl_ms: int
    redis_timeout: float | None
    # A bump waits until this many replicas have it (0: no waiting), each attempt for at
    # most wait_timeout_ms, attempts made for at most wait_deadline seconds.
    wait_replicas: int = 0
    wait_timeout_ms: int = 1000
    wait_deadline: float = 10.0


@runtime_checkable
class EpochProvider(Protocol):
    """Where each user's epoch lives.

    The request path reads the epoch beside the session record in one Redis command:
    `cached_key` names that key (the epoch itself for RedisEpochs, a cache of the
    database's value for SQLEpochs) and `resolve` turns what it held into the user's
    current epoch. Every method has an async twin with the `a` prefix.
    """

    def attach(self, context: EpochContext) -> None:
        """Adopt the configuration's key layout and Redis (called once, at set-up)."""

    def check_interface(self, interface: Interface) -> None:
        """Raise ConfigurationError if the provider cannot serve this kind of app."""

    def cached_key(self, tag: str) -> str | None:
        """The key read together with the session record, or None.

        A value found there is taken as the user's current epoch without calling
        `resolve`; a provider must keep it true (or absent)."""

    def resolve(self, user_id: UserId, tag: str, cached: str | None) -> str | None:
        """The user's current epoch given the value of `cached_key(tag)` (None when the key
        held nothing, or there is no such key); None if the user has none."""

    async def aresolve(self, user_id: UserId, tag: str, cached: str | None) -> str | None: ...

    def login_epoch(self, user_id: UserId) -> str | None:
        """The epoch to stamp at login, created if the user has none.

        None means: create or read it in Redis atomically with the login write.
        """

    async def alogin_epoch(self, user_id: UserId) -> str | None: ...

    def login_mode(self) -> Literal["ensure", "given"]:
        """'ensure': the login write reads or creates the epoch at `cached_key`, atomically
        with the record; 'given': `login_epoch` returned it and the write leaves the key be."""

    def bump_commands(self, user_id: UserId, epoch: str) -> list[Command] | None:
        """Commands on the session Redis that set the user's epoch to `epoch`, when the
        bump can ride in the request's write; None when it needs `bump`."""

    def bump_if(self, user_id: UserId, tag: str, expected: str) -> str | None:
        """Give the user a new epoch only if their epoch is still `expected` (a request's
        log-out-others or rotation, made from a session of tag `tag` stamped with it):
        the new epoch, or None when the epoch had moved, which nothing may undo."""

    async def abump_if(self, user_id: UserId, tag: str, expected: str) -> str | None: ...

    def get(self, user_id: UserId) -> str | None:
        """The user's current epoch, or None if they have none."""

    async def aget(self, user_id: UserId) -> str | None: ...

    def bump(self, user_id: UserId) -> str:
        """Give the user a new epoch: every session stamped with an older one is rejected."""

    async def abump(self, user_id: UserId) -> str: ...
