"""Operations on one user's sessions: list, revoke one, delete all. Sans-IO steps, like core."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .._device_label import device_label
from .._protocol.key_layout import UserId, user_id_text, valid_handle
from .._protocol.lua_scripts import ReadCall, ReadEpochCall, ReadIndexCall, RevokeCall
from .._protocol.records import Record, flat_fields
from .._protocol.timing import ms
from .._protocol.wire import Command, text
from ..errors import CorruptRecord
from ..events import SessionEvent
from .lifecycle import Core
from .lifecycle import _fingerprint as fingerprint
from .steps import Emit, RedisIO, Step

logger = logging.getLogger("session_middleware")


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One active session of a user, as a "where you're logged in" page shows it."""

    handle: str
    created_at: datetime
    last_seen: datetime
    expires_at: datetime
    user_agent: str | None
    ip: str | None

    @property
    def device(self) -> str:
        """The device, from the user agent: "Safari on iPhone", "curl", "Unknown device"."""
        return device_label(self.user_agent)

    def as_dict(self) -> dict[str, Any]:
        return {
            "handle": self.handle,
            "created_at": self.created_at.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "user_agent": self.user_agent,
            "ip": self.ip,
            "device": self.device,
        }


@dataclass(frozen=True, slots=True)
class UserState:
    """What the store holds for a user: whether they have an epoch (they logged in, or
    were invalidated, under these keys) and their live sessions. Neither usually means
    the wrong user id, secret key, key prefix or Redis db."""

    has_epoch: bool
    sessions: list[SessionInfo]

    @property
    def found(self) -> bool:
        return self.has_epoch or bool(self.sessions)


class UserSessions:
    """Operations on one user's sessions across all their tags (list, revoke one, delete all),
    as sans-I/O steps run like Core's."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.keys = core.keys

    def list(self, user_id: UserId, now: float) -> Step[list[SessionInfo]]:
        """Every live session of the user; dead index entries met on the way are pruned."""
        wanted = user_id_text(user_id)
        found: list[SessionInfo] = []
        for tag in self.keys.user_tags(user_id):
            index = self.keys.index_key(tag)
            handles = yield from _listed(index, str(ms(now)))
            if not handles:
                continue
            epoch_key = self.core.provider.cached_key(tag)
            # The read script, as for a request: a key of the wrong type reads as corrupt.
            reads: list[Command] = [
                ReadCall(record=self.keys.record_key(tag, handle)).command() for handle in handles
            ]
            if epoch_key is not None:
                reads.append(ReadEpochCall(epoch_key=epoch_key).command())
            replies = yield RedisIO(tuple(reads))
            values = [ReadCall.reply(reply).fields for reply in replies[: len(handles)]]
            cached = replies[-1] if epoch_key is not None else None
            dead = []
            for handle, raw in zip(handles, values, strict=False):
                record = self._decoded(raw)
                if record is None or record.user_id is None:
                    dead.append(handle)  # not a session of this user's
                    continue
                why, epoch = yield from self.core.liveness(record, tag, cached, now)
                cached = cached if epoch is None else epoch  # looked up once per tag
                if why is None and user_id_text(record.user_id) == wanted:
                    found.append(_info(handle, record, self.core.timing.ends_at(record)))
                else:
                    dead.append(handle)
            if dead:
                yield RedisIO((("ZREM", index, *dead),))
        found.sort(key=lambda info: info.last_seen, reverse=True)
        return found

    def _decoded(self, fields: Any) -> Record | None:
        """The record a read returned, decoded as a request decodes it; None if none."""
        if not fields:
            return None
        try:
            return self.core.records.read(flat_fields(fields))
        except CorruptRecord:
            return None

    def state(self, user_id: UserId, now: float) -> Step[UserState]:
        epoch = yield from self.core.provider.read_epoch(user_id)
        sessions = yield from self.list(user_id, now)
        return UserState(epoch is not None, sessions)

    def revoke(self, user_id: UserId, handle: str) -> Step[bool]:
        """End one session of the user at once; False if the handle is not theirs."""
        if not valid_handle(handle):
            return False
        for tag in self.keys.user_tags(user_id):
            index, record = self.keys.index_key(tag), self.keys.record_key(tag, handle)
            revoke = RevokeCall(index=index, record=record, handle=handle)
            (revoked,) = yield RedisIO((revoke.command(),))
            if revoked:
                yield Emit((SessionEvent("revoke", user_id, handle),))
                return True
        return False

    def invalidate(self, user_id: UserId, delete: bool) -> Step[None]:
        """Give the user a new epoch, which rejects every session they have; with `delete`,
        delete the records now too."""
        yield from self.core.provider.bump_epoch(user_id)
        if delete:
            yield from self.delete_all(user_id)
        yield Emit((SessionEvent("invalidate", user_id),))

    def delete_all(self, user_id: UserId) -> Step[int]:
        """Delete every session record of the user now; returns how many were listed."""
        deleted = 0
        for tag in self.keys.user_tags(user_id):
            index = self.keys.index_key(tag)
            handles = yield from _listed(index, "-inf")
            if not handles:
                continue
            record_keys = [self.keys.record_key(tag, handle) for handle in handles]
            # Only what was listed: a login landing meanwhile stays listed and revocable.
            yield RedisIO((("DEL", *record_keys), ("ZREM", index, *handles)))
            deleted += len(handles)
        return deleted


def _listed(index: str, since: str) -> Step[list[str]]:
    """The handles in a user's index scored from `since` ('-inf': all); none from a key
    that is not a sorted set (corrupt: the script deleted it), which is logged."""
    (listed,) = yield RedisIO((ReadIndexCall(index=index, since=since).command(),))
    if not isinstance(listed, (list, tuple)):
        logger.warning("replaced a user's index of the wrong type: key %s", fingerprint(index))
        return []
    return [h for h in (text(item) for item in listed) if h is not None]


def _info(handle: str, record: Record, expires: float) -> SessionInfo:
    return SessionInfo(
        handle=handle,
        created_at=_when(record.created),
        last_seen=_when(record.refreshed),
        expires_at=_when(expires),
        user_agent=_optional_text(record.extra.get("ua")),
        ip=_optional_text(record.extra.get("ip")),
    )


def _when(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) else None
