"""The Lua scripts, run with EVAL so that a script is never missing on a new or failed-over
server. Each touches only keys of one hash tag, so it runs unchanged on Redis Cluster.

Records are HASHes (see records.py); no script decodes JSON: Redis's cjson rounds integers
above 2^53 and turns ``[]`` into ``{}``, so values pass through Lua as opaque strings.
"""

from __future__ import annotations

from .timing import EPOCH_TTL_MARGIN_MS

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

# KEYS[1] epoch key; ARGV[1] candidate epoch, ARGV[2] epoch TTL ms.
ENSURE_EPOCH = _ENSURE + "return ensure(KEYS[1], ARGV[1], ARGV[2])\n"

# Read a session and its user's epoch in one command. KEYS: 1 the record, 2 (optional) the
# epoch key. Returns {record fields as HGETALL gives them, epoch or nil}; the fields are
# the string 'WRONGTYPE' when the key holds something that is not a hash.
READ = """
local r = redis.pcall('HGETALL', KEYS[1])
if type(r) == 'table' and r.err then r = 'WRONGTYPE' end
local e = false
if KEYS[2] then
  e = redis.pcall('GET', KEYS[2])
  if type(e) == 'table' and e.err then e = false end
end
return {r, e}
"""

# A new anonymous record; never over an existing one (an id is never reused).
# KEYS[1] the record. ARGV: 1 'PEXPIRE' or 'PEXPIREAT', 2 its value, 3.. field/value pairs.
CREATE = (
    _CHUNKED
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
in_chunks('HSET', KEYS[1], ARGV, 3, #ARGV)
expire(KEYS[1], ARGV[1], ARGV[2])
return 1
"""
)

# Apply one request's changes to a session as it is stored now.
# KEYS: 1 the record, then the user's epoch key unless ARGV[1] is 'none', then (optional)
# the user's index.
# ARGV: 1 where the epoch lives: 'redis' (the epoch key is the truth), 'cache' (it is a
# copy: when absent, the caller must look the epoch up and try again) or 'none' (not on
# this Redis); 2 the epoch the record carried when loaded ('' for an anonymous session:
# no epoch check); 3 the epoch the user must have now; 4 a new epoch to stamp on the
# record ('' for none), one this request gave the user itself; 5 max record
# bytes; 6 'PEXPIRE' or 'PEXPIREAT', 7 its value; 8 new index score ('' to leave the
# index), 9 the handle; 10 '1' to store an anonymous record even when this request left
# it empty (Django's save() does), else '0'; 11 N, the number of fields to set; 12.. N
# field/value pairs, then fields to delete.
# Returns WRITTEN; GONE when the record no longer exists (never brought back); EPOCH_MOVED
# when the user's epoch (or the record's stamp) is no longer the one loaded (an
# invalidation is never undone, a new epoch never adopted); EPOCH_UNKNOWN (see 'cache');
# {TOO_LARGE, size} when the record would outgrow ARGV[5]. Nothing is written unless WRITTEN,
# or EMPTIED: an anonymous record left with no data by this request's deletions (and no key
# a concurrent request added) is deleted, unless ARGV[10] keeps it.
WRITE = (
    _CHUNKED
    + f"""
local record = KEYS[1]
local mode, carried, wanted, stamp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local k = 2
local epoch_key = nil
if mode ~= 'none' then epoch_key = KEYS[k]; k = k + 1 end
local index = KEYS[k]
if redis.call('EXISTS', record) == 0 then return {GONE} end
if carried ~= '' then
  if redis.call('HGET', record, 'e') ~= carried then return {EPOCH_MOVED} end
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
local first, last = 12, 11 + 2 * tonumber(ARGV[11])
local changing = {{}}
for i = first, last, 2 do changing[ARGV[i]] = true end
for i = last + 1, #ARGV do changing[ARGV[i]] = true end
local size = 0
local current = redis.call('HGETALL', record)
for i = 1, #current, 2 do
  if not changing[current[i]] then size = size + #current[i] + #current[i + 1] end
end
for i = first, last do size = size + #ARGV[i] end
if size > tonumber(ARGV[5]) then return {{{TOO_LARGE}, size}} end
in_chunks('HSET', record, ARGV, first, last)
in_chunks('HDEL', record, ARGV, last + 1, #ARGV)
if #ARGV > last and ARGV[10] ~= '1' and redis.call('HEXISTS', record, 'u') == 0 then
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
)

# Log in. KEYS: 1 the new session record, 2 the user's epoch key, 3 the user's index,
# 4 (when rotating a session of this user under the same tag) the session's old record.
# ARGV: 1 mode, 2 epoch: 'ensure' reads or creates the epoch here (ARGV[2] the candidate);
# 'given' stamps ARGV[2], which the provider returned, and leaves the epoch key alone;
# 'expect' (rotating a logged-in session, or one whose request changed the epoch with a
# compare-and-set) stamps ARGV[2] only if it is still the user's epoch.
# 3 epoch TTL ms; 4 record TTL ms; 5 handle; 6 the record's expiry (unix ms, its index
# score); 7 now (unix ms); 8 index TTL ms; 9 most sessions the user may have (0: no
# limit): the soonest to expire are ended; 10 the key of a record of this user less its
# handle; 11 the old record's handle ('' for none); 12.. the record's field/value pairs.
# Returns {the epoch stamped, what was replaced, the handles of the sessions the cap
# ended...}, or nil, writing nothing, when an 'expect' found the epoch moved (or not a
# string) or the old record gone (revoked, deleted): a session ended in flight stays
# ended. A key of the wrong type at the epoch ('ensure') or the index is corrupt: it is
# replaced, and named in the reply ('epoch', 'index', or both, comma-separated; '').
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
  redis.call('ZREM', KEYS[3], ARGV[11])
end
in_chunks('HSET', KEYS[1], ARGV, 12, #ARGV)
redis.call('HSET', KEYS[1], 'e', e)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[7])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
local ended = {e, table.concat(replaced, ',')}
local cap = tonumber(ARGV[9])
if cap > 0 then
  local over = redis.call('ZCARD', KEYS[3]) - cap
  if over > 0 then
    for _, handle in ipairs(redis.call('ZRANGE', KEYS[3], 0, over - 1)) do
      if handle ~= ARGV[5] then
        redis.call('DEL', ARGV[10] .. handle)
        redis.call('ZREM', KEYS[3], handle)
        table.insert(ended, handle)
      end
    end
  end
end
redis.call('PEXPIRE', KEYS[3], ARGV[8])
return ended
"""
)

# Move a session out of an older signing key's tag, for a login that rotates it under the
# current key: delete it only if it still exists and (KEYS[3], when given) its user's epoch
# under that tag is still ARGV[1]. KEYS: 1 the record, 2 the index, 3 (optional) the epoch
# key; ARGV: 1 the carried epoch, 2 the handle. Returns 1 when moved out, 0 when refused.
ROTATE_OUT = """
if KEYS[3] and redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""

# Set the epoch to ARGV[2] only if it is still ARGV[1] and, given KEYS[2] (the session
# that asks), that session is still stored, stamped ARGV[4]. KEYS[1] the epoch key; ARGV[3]
# TTL ms. Returns 1 when set, 0 when the epoch had moved (or was gone) or the session was
# ended. Safe to send again (a durable write is, see replication.py): an epoch already
# ARGV[2], a random value only this caller knows, was set by this very compare-and-set.
BUMP_IF = """
local e = redis.pcall('GET', KEYS[1])
if type(e) == 'table' then return 0 end  -- not a string: corrupt, no session can match it
if e == ARGV[2] then return 1 end
if e ~= ARGV[1] then return 0 end
if KEYS[2] and redis.pcall('HGET', KEYS[2], 'e') ~= ARGV[4] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# Revoke one session of a user. KEYS: 1 the user's index, 2 the record. ARGV: 1 handle.
# Only a handle listed in this user's index is deleted: another user's handle is refused.
REVOKE = """
if redis.pcall('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""

# A user's index, from score ARGV[1] ('-inf' for all) up: the handles listed, or the string
# 'WRONGTYPE' when KEYS[1] holds something that is not a sorted set (corrupt: deleted).
READ_INDEX = """
local r = redis.pcall('ZRANGE', KEYS[1], ARGV[1], '+inf', 'BYSCORE')
if type(r) == 'table' and r.err then
  redis.call('DEL', KEYS[1])
  return 'WRONGTYPE'
end
return r
"""

# A user's epoch as the read script takes it: nil when KEYS[1] holds no string.
READ_EPOCH = """
local e = redis.pcall('GET', KEYS[1])
if type(e) == 'table' then return false end
return e
"""
