"""The Redis copy of each user's SQL epoch: a cache with a TTL, filled without races.

The cache lives at the key RedisEpochs would use for the epoch, so the request path
reads it beside the session record in one round trip (Core.open). A bump through
SQLEpochs overwrites it once the new epoch is committed; a fill after a cache miss
writes only if the key is still what the filler saw, so a fill that read the database
before a bump committed can never overwrite the bump's value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .._core.epoch_provider import StampedRecord
from .._protocol.key_layout import KeySpace, UserId
from .._protocol.lua_scripts import CopyAndRestampCall
from .._protocol.script_call import ScriptCall, key
from .._protocol.wire import Command

# Stores only if the key holds what was expected (see FillCall); returns what it holds. A
# key that is not a string is corrupt: it counts as empty (and is overwritten).
FILL = """
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'table' then current = false end
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return ARGV[2]
end
return current
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class FillCall(ScriptCall):
    """FILL: store `epoch` at `cache_key` if it holds `expected` ('' for none)."""

    SCRIPT: ClassVar[str] = FILL
    cache_key: str = key()
    expected: str
    epoch: str
    ttl_ms: int


class EpochCache:
    """The commands that read, fill and overwrite the Redis copy of users' SQL epochs."""

    def __init__(self, keys: KeySpace, ttl_ms: int) -> None:
        self.keys = keys
        self.ttl_ms = ttl_ms

    def key(self, tag: str) -> str:
        return self.keys.epoch_key(tag)

    def login_key(self, user_id: UserId) -> str:
        """The key a new login of the user reads (the tag of the signing key)."""
        return self.keys.epoch_key(self.keys.user_tag(user_id))

    def fill(self, key: str, expected: str | None, epoch: str) -> Command:
        """Store `epoch` at `key` if the key holds `expected` (None: if it is empty)."""
        return FillCall(
            cache_key=key, expected=expected or "", epoch=epoch, ttl_ms=self.ttl_ms
        ).command()

    def publish(self, user_id: UserId, epoch: str) -> list[Command]:
        """Overwrite the cache under every tag of the user: a committed bump."""
        return [
            ("SET", self.keys.epoch_key(tag), epoch, "PX", self.ttl_ms)
            for tag in self.keys.user_tags(user_id)
        ]

    def restamping(
        self, published: list[Command], tag: str, epoch: str, session: StampedRecord
    ) -> list[Command]:
        """`published` (see publish), its write of the copy under `tag` made by one script
        with the re-stamp of `session`, stored under that tag: a bump that a request of
        `session` made."""
        restamp = CopyAndRestampCall(
            copy_key=self.key(tag),
            session=session[0],
            epoch=epoch,
            ttl_ms=self.ttl_ms,
            stamp=session[1],
        ).command()
        return [restamp, *(command for command in published if command[1] != self.key(tag))]
