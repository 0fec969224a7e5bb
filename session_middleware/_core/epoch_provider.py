"""What an epoch provider is, and what every provider shares.

The contract between the core and its two providers, RedisEpochs and SQLEpochs; not a
published extension point: a provider must keep the epoch key that the session read reads
beside the session record true, and take part in the login script's writes (see
docs/sql-epochs.md, "Other stores")."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias, runtime_checkable

from .._protocol.key_layout import KeySpace, UserId
from .._protocol.wire import text
from .steps import RedisIO, Step

if TYPE_CHECKING:
    from .._transport.clients import RedisClients
    from .._transport.local_cache import CachingClients

Interface = Literal["asgi", "wsgi"]
# A session record's key on the session Redis and the epoch it is stamped with.
StampedRecord = tuple[str, str]

SessionRedis: TypeAlias = "RedisClients | CachingClients"
"""The session Redis of a configuration: a sync and an async client for it, read through
the local cache when ``local_cache`` is on."""


def new_epoch() -> str:
    """A random epoch: 128 bits from `secrets`, so a value never comes back."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class EpochContext:
    """What a provider is given when a configuration adopts it."""

    keys: KeySpace
    redis: SessionRedis
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

    The request path reads the epoch beside the session record in one Redis round trip:
    `cached_key` names that key (the epoch itself for RedisEpochs, a cache of the
    database's value for SQLEpochs) and `resolve` turns what it held into the user's
    current epoch.

    Every operation that does I/O returns a step (see `_core/steps.py`): a generator that
    yields `RedisIO` and `SqlIO` requests and is sent back their results. The package runs
    the same step on the sync or the async face, so a provider has no `a`-prefixed twins.
    """

    def attach(self, context: EpochContext) -> None:
        """Adopt the configuration's key layout and Redis (called once, at set-up)."""

    def check_interface(self, interface: Interface) -> None:
        """Raise ConfigurationError if the provider cannot serve this kind of app."""

    def cached_key(self, tag: str) -> str | None:
        """The key read together with the session record, or None.

        A value found there is taken as the user's current epoch without calling
        `resolve`; a provider must keep it true (or absent). The same tag must always
        give the same key: the core remembers it with the session's read."""

    def resolve(self, user_id: UserId, tag: str, cached: str | None) -> Step[str | None]:
        """The user's current epoch given the value of `cached_key(tag)` (None when the key
        held nothing, or there is no such key); None if the user has none."""

    def login_epoch(self, user_id: UserId) -> Step[str | None]:
        """The epoch to stamp at login, created if the user has none.

        None means: create or read it in Redis atomically with the login write.
        """

    def login_mode(self) -> Literal["ensure", "given"]:
        """'ensure': the login write reads or creates the epoch at `cached_key`, atomically
        with the record; 'given': `login_epoch` returned it and the write leaves the key be."""

    def bump_if(
        self,
        user_id: UserId,
        tag: str,
        expected: str,
        session: StampedRecord | None = None,
        restamp: bool = False,
    ) -> Step[str | None]:
        """Give the user a new epoch only if their epoch is still `expected` (a request's
        log-out-others, rotation or password change, made from a session of tag `tag`
        that carries it) and, given `session`, that session is still stored with its
        stamp: the new epoch, or None when the epoch had moved or the session was ended,
        which nothing may undo. Made durable as invalidate_user's bump is. With `restamp`, a
        provider that can (see `restamps`) stamps `session` with the new epoch in the same
        atomic step: no request of that session finds the epoch new and its stamp old."""

    @property
    def restamps(self) -> bool:
        """Whether `bump_if` with `restamp` stamps the session with the new epoch in the
        bump's own atomic step (the epoch, or its copy, lives beside the session)."""

    def read_epoch(self, user_id: UserId) -> Step[str | None]:
        """The user's current epoch, or None if they have none."""

    def bump_epoch(self, user_id: UserId) -> Step[str]:
        """Give the user a new epoch: every session stamped with an older one is rejected."""


def still_stamped(session: StampedRecord | None) -> Step[bool]:
    """Whether `session` is still stored with its stamp, read just before a bump whose
    epochs live apart from the sessions (beside them, the bump's script checks it)."""
    if session is None:
        return True
    record_key, stamp = session
    (stored,) = yield RedisIO((("HGET", record_key, "e"),))
    return text(stored) == stamp
