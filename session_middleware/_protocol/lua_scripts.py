"""The Lua scripts, run with EVAL so that a script is never missing on a new or failed-over
server. Each touches only keys of one hash tag, so it runs unchanged on Redis Cluster.

Records are HASHes (see records.py); no script decodes JSON: Redis's cjson rounds integers
above 2^53 and turns ``[]`` into ``{}``, so values pass through Lua as opaque strings.

Each script is followed by its call (see script_call.py): the fields of the call are the
script's KEYS, then its ARGV, in order, so ``KEYS[2]`` of WRITE is ``WriteCall.epoch_key``
(when present) and ``ARGV[5]`` its ``max_bytes``. Callers pass names; the call builds the
command and decodes the reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ..errors import StoreUnavailable
from .script_call import ScriptCall, flag, key, optional_key, pairs, rest
from .timing import EPOCH_TTL_MARGIN_MS
from .wire import text

# Replies of WRITE.
WRITTEN, EMPTIED, GONE, TOO_LARGE, EPOCH_MOVED, EPOCH_UNKNOWN = 1, 2, 0, -1, -2, -3

# HSET and HDEL in chunks (Lua's unpack() has a bounded stack), and an expiry in ms.
_CHUNKED = """
local function in_chunks(command, key, args, first, last)
  local i = first
  while i <= last do
    local j = math.min(i + 199, last)
    if command == 'HSET' then redis.call('HSET', key, unpack(args, i, j))
    else redis.call('HDEL', key, unpack(args, i, j)) end
    i = j + 1
  end
end
local function expire(key, how, value)
  if how == 'PEXPIREAT' then redis.call('PEXPIREAT', key, value)
  else redis.call('PEXPIRE', key, value) end
end
"""

# The current epoch at `key`, created as `candidate` if there is none (or if the key holds
# something that is not a string: a key of the wrong type is corrupt, and replaced). Its
# TTL is extended to `ttl` ms (the session lifetime and a minute) once less than the
# lifetime is left, so the epoch outlives every session stamped with it; not at every
# login, as each PEXPIRE counts as a change and evicts the epoch from every worker's local
# cache.
_ENSURE = f"""
local MARGIN = {EPOCH_TTL_MARGIN_MS}
local function ensure(key, candidate, ttl)
  local e = redis.pcall('GET', key)
  if type(e) == 'table' then
    redis.call('DEL', key)
    e = false
  end
  if not e then
    redis.call('SET', key, candidate, 'PX', ttl)
    return candidate
  end
  local left = redis.call('PTTL', key)
  if left >= 0 and left < tonumber(ttl) - MARGIN then redis.call('PEXPIRE', key, ttl) end
  return e
end
"""

ENSURE_EPOCH = _ENSURE + "return ensure(KEYS[1], ARGV[1], ARGV[2])\n"


@dataclass(slots=True, kw_only=True)
class EnsureEpochCall(ScriptCall):
    """ENSURE_EPOCH: the user's epoch, created as `candidate` if there is none."""

    SCRIPT: ClassVar[str] = ENSURE_EPOCH
    epoch_key: str = key()
    candidate: str
    epoch_ttl_ms: int


# Read a session and its user's epoch in one command, atomically (see ReadCall): the
# request's read when the pipelined read cannot decide (record_commands.pipelined_read).
_READ = """
local function read(record, epoch_key)
  local r = redis.pcall('HGETALL', record)
  if type(r) == 'table' and r.err then r = 'WRONGTYPE' end
  local e = false
  if epoch_key then
    e = redis.pcall('GET', epoch_key)
    if type(e) == 'table' and e.err then e = false end
  end
  return r, e
end
"""
READ = _READ + "local r, e = read(KEYS[1], KEYS[2])\nreturn {r, e}\n"


@dataclass(slots=True)  # not frozen: made for every request, and frozen costs more
class ReadReply:
    """READ's reply: the record's fields as HGETALL gives them (the string 'WRONGTYPE' when
    the key holds something that is not a hash), and the epoch (None without one)."""

    fields: Any
    epoch: Any


@dataclass(slots=True, kw_only=True)
class ReadCall(ScriptCall):
    """READ: a session record and, with `epoch_key`, its user's epoch."""

    SCRIPT: ClassVar[str] = READ
    record: str = key()
    epoch_key: str | None = optional_key()

    @staticmethod
    def reply(reply: Any) -> ReadReply:
        if not isinstance(reply, (list, tuple)) or len(reply) != 2:
            raise StoreUnavailable("unexpected reply to the session read")
        return ReadReply(reply[0], reply[1])


# A new anonymous record; never over an existing one (an id is never reused): 1 when
# created, 0 when the key existed.
CREATE = (
    _CHUNKED
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
in_chunks('HSET', KEYS[1], ARGV, 3, #ARGV)
expire(KEYS[1], ARGV[1], ARGV[2])
return 1
"""
)


@dataclass(slots=True, kw_only=True)
class CreateCall(ScriptCall):
    """CREATE: a new anonymous record of `fields`, expiring by `expire` at `expire_at`."""

    SCRIPT: ClassVar[str] = CREATE
    record: str = key()
    expire: str  # 'PEXPIRE' or 'PEXPIREAT'
    expire_at: int
    fields: Sequence[str] = rest()

    @staticmethod
    def reply(reply: Any) -> bool:
        """Whether the record was created (False: the key existed)."""
        try:
            return int(reply) == 1
        except (TypeError, ValueError):
            raise StoreUnavailable("unexpected reply to a session write") from None


# Apply one request's changes to a session as it is stored now (see WriteCall).
# Returns WRITTEN; GONE when the record no longer exists (never brought back); EPOCH_MOVED
# when the user's epoch (or the record's stamp) is no longer the one loaded (an
# invalidation is never undone, a new epoch never adopted); EPOCH_UNKNOWN (see
# EpochGuard 'cache'); {TOO_LARGE, size} when the record would outgrow `max_bytes`.
# Nothing is written unless WRITTEN, or EMPTIED: an anonymous record left with no data by
# this request's deletions (and no key a concurrent request added) is deleted, unless
# `keep_empty`.
#
# Redis's CPU per write is most of what a session costs it, so the script reads no more
# of the record than the checks need: one HMGET of the stamp, the user and the fields this
# write replaces. Any of them found proves the record exists. A write that does not grow
# the record cannot take it over the limit, as it was within it: every write that grows a
# record is checked (by this script, as by the releases before it, which read the whole
# record), and a reader refuses a record over the limit, so none is written to (see
# records.decode). Only a write that grows the record reads all of it, to size it: at once
# (one HGETALL for every check) when the caller expects it to grow (`grows`), after the
# HMGET when a concurrent request made it grow.
_WRITE = f"""
local record = KEYS[1]
local mode, carried, wanted, stamp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local k = 2
local epoch_key = nil
if mode ~= 'none' then epoch_key = KEYS[k]; k = k + 1 end
local index = KEYS[k]
local first, last = 13, 12 + 2 * tonumber(ARGV[12])
local changing = {{}}
for i = first, last, 2 do changing[ARGV[i]] = true end
for i = last + 1, #ARGV do changing[ARGV[i]] = true end
-- What the checks need: the record's stamp, whether it has a user, and (when the write
-- grows it) its size after this write.
local e, user, size = false, false, nil
local whole = ARGV[11] == '1'
if not whole then
  local names = {{'e', 'u'}}
  for name in pairs(changing) do names[#names + 1] = name end
  local found = {{}}
  if #names <= 200 then found = redis.call('HMGET', record, unpack(names)) end
  for i = #found + 1, #names, 200 do
    local part = redis.call('HMGET', record, unpack(names, i, math.min(i + 199, #names)))
    for j = 1, #part do found[i + j - 1] = part[j] end
  end
  e, user = found[1], found[2]
  local exists, grows = e or user, 0
  for i = first, last do grows = grows + #ARGV[i] end
  for i = 3, #names do
    if found[i] then exists = true; grows = grows - #names[i] - #found[i] end
  end
  if not exists and redis.call('EXISTS', record) == 0 then return {GONE} end
  whole = grows > 0
end
if whole then
  local fields = redis.call('HGETALL', record)
  if #fields == 0 then return {GONE} end
  size = 0
  for i = 1, #fields, 2 do
    local name = fields[i]
    if not changing[name] then size = size + #name + #fields[i + 1] end
    if name == 'e' then e = fields[i + 1] elseif name == 'u' then user = true end
  end
  for i = first, last do size = size + #ARGV[i] end
end
if carried ~= '' then
  -- `stamp` is an epoch only this request knows: a record stamped with it was re-stamped
  -- by this request's own compare-and-set (BUMP_IF)
  if e ~= carried and (stamp == '' or e ~= stamp) then return {EPOCH_MOVED} end
  if epoch_key then
    local current = redis.pcall('GET', epoch_key)
    if type(current) == 'table' then return {EPOCH_MOVED} end  -- not a string: corrupt
    if not current then
      if mode == 'cache' then return {EPOCH_UNKNOWN} end
      return {EPOCH_MOVED}
    end
    if current ~= wanted then return {EPOCH_MOVED} end
  end
end
if size and size > tonumber(ARGV[5]) then return {{{TOO_LARGE}, size}} end
in_chunks('HSET', record, ARGV, first, last)
in_chunks('HDEL', record, ARGV, last + 1, #ARGV)
if #ARGV > last and ARGV[10] ~= '1' and not user then
  local empty = true
  for _, name in ipairs(redis.call('HKEYS', record)) do
    if string.sub(name, 1, 2) == 'd:' then empty = false; break end
  end
  if empty then
    redis.call('DEL', record)
    return {EMPTIED}
  end
end
if stamp ~= '' then redis.call('HSET', record, 'e', stamp) end
expire(record, ARGV[6], ARGV[7])
if index and ARGV[8] ~= '' then redis.pcall('ZADD', index, 'XX', ARGV[8], ARGV[9]) end
return {WRITTEN}
"""
WRITE = _CHUNKED + _WRITE

# WRITE (the same keys and arguments), then, when it wrote the record, EXISTS of the
# record's key: Redis tracks it again for the connection (the write's own change untracked
# it, unreported with NOLOOP). Returns {WRITE's reply, 1 when the record was written and is
# still there, else 0}: a write whose expiry time has passed deletes the record it wrote.
# Run by the local cache (local_cache.py), which applies the write's changes to its copy of
# the record instead of reading it back; as one script, no other client's write comes
# between the two.
WRITE_AND_TRACK = f"""{_CHUNKED}
local function write()
{_WRITE}
end
local outcome = write()
local tracked = 0
if outcome == {WRITTEN} then tracked = redis.call('EXISTS', KEYS[1]) end
return {{outcome, tracked}}
"""

# Where a user's epoch lives, as a write's guard sees it: 'redis' (the epoch key is the
# truth), 'cache' (it is a copy: when absent, the caller must look the epoch up and try
# again) or 'none' (not on this Redis).
EpochGuard = Literal["redis", "cache", "none"]


@dataclass(slots=True)  # not frozen: made for every write, and frozen costs more
class WriteReply:
    """WRITE's reply: the outcome, and with TOO_LARGE the size the record would take."""

    outcome: int
    size: int = 0


@dataclass(slots=True, kw_only=True)
class WriteCall(ScriptCall):
    """WRITE: set `set_pairs` and delete `deleted` on the record as stored, if the guard
    (`mode`, `carried`, `wanted`) holds."""

    SCRIPT: ClassVar[str] = WRITE
    record: str = key()
    epoch_key: str | None = optional_key(present=lambda args: args["mode"] != "none")
    index: str | None = optional_key()  # the user's index, re-scored with `score`
    mode: EpochGuard  # where the epoch lives; 'none': no epoch key
    carried: str  # the epoch the record carried when loaded; '' (anonymous): no epoch check
    wanted: str  # the epoch the user must have now
    stamp: str  # a new epoch for the record, one this request gave the user itself; ''
    max_bytes: int
    expire: str  # 'PEXPIRE' or 'PEXPIREAT'
    expire_at: int
    score: str  # the new index score; '' to leave the index alone
    handle: str
    keep_empty: bool = flag()  # store an anonymous record this request left empty
    grows: bool = flag()  # the changes are expected to grow the record (see WRITE)
    set_pairs: Sequence[str] = pairs()  # field/value pairs to set
    deleted: Sequence[str] = rest()  # fields to delete

    @staticmethod
    def session_keys(command: Sequence[Any]) -> tuple[str, ...] | None:
        """The record and, when the guard has one, the epoch key of a WRITE `command`: what
        a READ of that session reads (None: `command` is not a WRITE). Read from their
        places (the record first, the epoch key next unless `mode` is 'none') without
        building the whole call back (`of`): this is asked on every write."""
        if len(command) < 5 or command[0] != "EVAL" or command[1] != WRITE:
            return None
        count = int(command[2])
        if count >= 2 and command[3 + count] != "none":
            return (command[3], command[4])
        return (command[3],)

    @staticmethod
    def changes(command: Sequence[Any]) -> tuple[Sequence[str], Sequence[str], str]:
        """What a WRITE `command` does to the record when it is WRITTEN: the field/value
        pairs it sets, the fields it deletes, and the stamp it sets as 'e' ('' for none);
        read from their places, as session_keys reads the keys."""
        argv = 3 + int(command[2])
        first = argv + 12
        last = first + 2 * int(command[argv + 11])
        return command[first:last], command[last:], command[argv + 3]

    @staticmethod
    def reply(reply: Any) -> WriteReply:
        try:
            if isinstance(reply, (list, tuple)):
                return WriteReply(int(reply[0]), int(reply[1]))
            return WriteReply(int(reply))
        except (TypeError, ValueError, IndexError):
            raise StoreUnavailable("unexpected reply to a session write") from None


# Log in (see LoginCall). Returns {the epoch stamped, what was replaced, the handles of the
# sessions the cap ended...}, or nil, writing nothing, when an 'expect' found the epoch
# moved (or not a string) or the old record gone (revoked, deleted): a session ended in
# flight stays ended. A key of the wrong type at the epoch ('ensure') or the index is
# corrupt: it is replaced, and named in the reply ('epoch', 'index', or both,
# comma-separated; ''). The cap ends the sessions soonest to expire; of those that expire
# in the same ms, the first in handle order (ZRANGE's order for equal scores).
LOGIN = (
    _ENSURE
    + _CHUNKED
    + """
local mode, e = ARGV[1], ARGV[2]
if KEYS[4] and redis.call('EXISTS', KEYS[4]) == 0 then return false end
if mode == 'expect' and redis.pcall('GET', KEYS[2]) ~= e then return false end
local replaced = {}
local function corrupt(key, kind, name)
  local found = redis.call('TYPE', key)['ok']
  if found ~= 'none' and found ~= kind then
    redis.call('DEL', key)
    table.insert(replaced, name)
  end
end
if mode == 'ensure' then corrupt(KEYS[2], 'string', 'epoch') end
corrupt(KEYS[3], 'zset', 'index')
if mode == 'ensure' then
  e = ensure(KEYS[2], e, ARGV[3])
elseif mode == 'expect' then
  ensure(KEYS[2], e, ARGV[3])
end
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('session id in use') end
if KEYS[4] then
  redis.call('DEL', KEYS[4])
  redis.call('ZREM', KEYS[3], ARGV[10])
end
in_chunks('HSET', KEYS[1], ARGV, 11, #ARGV)
redis.call('HSET', KEYS[1], 'e', e)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[7])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
local ended = {e, table.concat(replaced, ',')}
local cap = tonumber(ARGV[8])
if cap > 0 then
  local over = redis.call('ZCARD', KEYS[3]) - cap
  if over > 0 then
    for _, handle in ipairs(redis.call('ZRANGE', KEYS[3], 0, over - 1)) do
      if handle ~= ARGV[5] then
        redis.call('DEL', ARGV[9] .. handle)
        redis.call('ZREM', KEYS[3], handle)
        table.insert(ended, handle)
      end
    end
  end
end
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return ended
"""
)

# How the login script comes by the epoch it stamps: 'ensure' reads or creates the epoch
# (`epoch` the candidate); 'given' stamps `epoch`, which the provider returned, and leaves
# the epoch key alone; 'expect' (rotating a logged-in session, or one whose request
# changed the epoch with a compare-and-set) stamps `epoch` only if it is still the user's.
LoginMode = Literal["ensure", "given", "expect"]


@dataclass(frozen=True, slots=True)
class LoginReply:
    """LOGIN's reply: the epoch stamped, the keys of the wrong type it replaced ('epoch',
    'index', comma-separated, or ''), and the handles of the sessions the cap ended."""

    epoch: str | None
    replaced: str | None
    ended: tuple[str, ...]


@dataclass(slots=True, kw_only=True)
class LoginCall(ScriptCall):
    """LOGIN: a new record of `fields` for a user, stamped with the user's epoch."""

    SCRIPT: ClassVar[str] = LOGIN
    record: str = key()
    epoch_key: str = key()
    index: str = key()
    # The session this login rotates, under the same tag: it must still exist, and is
    # deleted by the script.
    old_record: str | None = optional_key()
    mode: LoginMode
    epoch: str
    epoch_ttl_ms: int  # the epoch's TTL when the script sets it; the index's too
    record_ttl_ms: int
    handle: str
    score: int  # the record's expiry (unix ms), its score in the index
    now_ms: int
    max_sessions: int  # the most sessions the user may have (0: no limit)
    record_key_base: str  # the key of a record of this user, less its handle
    old_handle: str  # the old record's handle ('' for none)
    fields: Sequence[str] = rest()

    @classmethod
    def capped_key_base(cls, command: Sequence[Any]) -> str | None:
        """`record_key_base` of a LOGIN `command` that has a cap (`max_sessions`): the
        records the cap ends are deleted under keys the command does not declare, built
        from it and the handles in the reply (`reply().ended`). None for any other command."""
        if command[0] != "EVAL" or command[1] != LOGIN:
            return None
        call = cls.of(tuple(command))
        return call.record_key_base if int(call.max_sessions) > 0 else None

    @staticmethod
    def reply(reply: Any) -> LoginReply | None:
        """None when the login was refused (see LOGIN)."""
        if reply is None:
            return None
        epoch, replaced, *ended = (text(item) for item in reply)
        return LoginReply(epoch, replaced, tuple(handle for handle in ended if handle))


# Move a session out of an older signing key's tag, for a login that rotates it under the
# current key (see RotateOutCall). Returns 1 when moved out, 0 when refused.
ROTATE_OUT = """
if KEYS[3] and redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""


@dataclass(slots=True, kw_only=True)
class RotateOutCall(ScriptCall):
    """ROTATE_OUT: delete `record` only if it still exists and (given `epoch_key`) its
    user's epoch under that tag is still `carried`."""

    SCRIPT: ClassVar[str] = ROTATE_OUT
    record: str = key()
    index: str = key()
    epoch_key: str | None = optional_key()
    carried: str  # '' without an epoch key
    handle: str


# A compare-and-set on the epoch (see BumpIfCall). Returns 1 when set, 0 when the epoch had
# moved (or was gone) or the session was ended. Given the asking session and `restamp`,
# that session is stamped with the new epoch by the same script. Safe to send again (a
# durable write is, see _transport/replication.py): an epoch already the new one, a random
# value only this caller knows, was set by this very compare-and-set.
BUMP_IF = """
local e = redis.pcall('GET', KEYS[1])
if type(e) == 'table' then return 0 end  -- not a string: corrupt, no session can match it
if e == ARGV[2] then return 1 end
if e ~= ARGV[1] then return 0 end
if KEYS[2] and redis.pcall('HGET', KEYS[2], 'e') ~= ARGV[4] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
-- re-stamped in the same step: no request of the session finds the epoch new, its stamp old
if KEYS[2] and ARGV[5] == '1' then redis.call('HSET', KEYS[2], 'e', ARGV[2]) end
return 1
"""


@dataclass(slots=True, kw_only=True)
class BumpIfCall(ScriptCall):
    """BUMP_IF: set the epoch to `epoch` only if it is still `expected` and, given
    `session` (the session that asks), that session is still stored, stamped `stamp`;
    with `restamp` '1', that session is then stamped with `epoch`."""

    SCRIPT: ClassVar[str] = BUMP_IF
    epoch_key: str = key()
    session: str | None = optional_key()
    expected: str
    epoch: str
    epoch_ttl_ms: int
    stamp: str | None = None  # with `session` only
    restamp: str | None = None  # '1': with `session` only


# The Redis copy of an epoch that the database has just moved to a new value by a
# compare-and-set from a request (SQLEpochs), and the session that asked re-stamped with
# it, in one step (see CopyAndRestampCall): no request of that session finds the copy new
# and its stamp old. The copy is overwritten as every bump overwrites it; the session is
# re-stamped only if it is still stored stamped as loaded, never re-created. Returns 1 when
# re-stamped. Safe to send again: the second time it re-stamps nothing.
COPY_AND_RESTAMP = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.pcall('HGET', KEYS[2], 'e') ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[2], 'e', ARGV[1])
return 1
"""


@dataclass(slots=True, kw_only=True)
class CopyAndRestampCall(ScriptCall):
    """COPY_AND_RESTAMP: store `epoch` at `copy_key` and, if `session` (under the same
    hash tag) is still stamped `stamp`, stamp it with `epoch`."""

    SCRIPT: ClassVar[str] = COPY_AND_RESTAMP
    copy_key: str = key()
    session: str = key()
    epoch: str
    ttl_ms: int
    stamp: str


# Revoke one session of a user (see RevokeCall): 1 when revoked. Only a handle listed in
# this user's index is deleted: another user's handle is refused.
REVOKE = """
if redis.pcall('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""


@dataclass(slots=True, kw_only=True)
class RevokeCall(ScriptCall):
    """REVOKE: delete `record` if `handle` is listed in the user's `index`."""

    SCRIPT: ClassVar[str] = REVOKE
    index: str = key()
    record: str = key()
    handle: str


# A user's index from a score up: the handles listed, or the string 'WRONGTYPE' when the
# key holds something that is not a sorted set (corrupt: deleted).
READ_INDEX = """
local r = redis.pcall('ZRANGE', KEYS[1], ARGV[1], '+inf', 'BYSCORE')
if type(r) == 'table' and r.err then
  redis.call('DEL', KEYS[1])
  return 'WRONGTYPE'
end
return r
"""


@dataclass(slots=True, kw_only=True)
class ReadIndexCall(ScriptCall):
    """READ_INDEX: the handles in a user's `index` scored from `since` ('-inf': all)."""

    SCRIPT: ClassVar[str] = READ_INDEX
    index: str = key()
    since: str


# A user's epoch as the read script takes it: nil when the key holds no string.
READ_EPOCH = """
local e = redis.pcall('GET', KEYS[1])
if type(e) == 'table' then return false end
return e
"""


@dataclass(slots=True, kw_only=True)
class ReadEpochCall(ScriptCall):
    """READ_EPOCH: the user's epoch at `epoch_key`."""

    SCRIPT: ClassVar[str] = READ_EPOCH
    epoch_key: str = key()
