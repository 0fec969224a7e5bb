"""The Lua scripts, run with EVAL so that a script is never missing on a new or failed-over
server. Each touches only keys of one hash tag, so it runs unchanged on Redis Cluster."""

from __future__ import annotations

# Epochs (and indexes) live this much longer than the sessions stamped with them.
EPOCH_TTL_MARGIN_MS = 60_000

# The current epoch at `key`, created as `candidate` if there is none. Its TTL is extended
# to `ttl` ms (the session lifetime and a minute) once less than the lifetime is left, so
# the epoch outlives every session stamped with it; not at every login, as each PEXPIRE
# counts as a change and evicts the epoch from every worker's local cache.
_ENSURE = f"""
local MARGIN = {EPOCH_TTL_MARGIN_MS}
local function ensure(key, candidate, ttl)
  local e = redis.call('GET', key)
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

# Login. KEYS: 1 the new session record, 2 the user's epoch key, 3 the user's index.
# ARGV: 1 mode ('ensure': read or create the epoch here; 'given': the provider knows the
# epoch and leaves the epoch key alone), 2 epoch (candidate or known),
# 3 epoch TTL ms, 4 record head, 5 record tail, 6 record TTL ms, 7 handle, 8 the record's
# expiry (unix ms), 9 now (unix ms), 10 index TTL ms.
LOGIN = (
    _ENSURE
    + """
local e = ARGV[2]
if ARGV[1] == 'ensure' then
  e = ensure(KEYS[2], e, ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[4] .. e .. ARGV[5], 'PX', ARGV[6], 'NX')
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[9])
redis.call('ZADD', KEYS[3], ARGV[8], ARGV[7])
redis.call('PEXPIRE', KEYS[3], ARGV[10])
return e
"""
)

# Write back a session only if it is still exactly as this request loaded it.
# KEYS: 1 the record, 2 (optional) the user's index. ARGV: 1 SHA-1 of the record as
# loaded, 2 the new record, 3 'PXAT' or 'PX', 4 its value, 5 handle, 6 new index score.
# Returns 1 when written; 0 when the record is gone (a logout or revocation won: it is
# not brought back); the current record when another request changed it meanwhile, for
# the caller to merge its own changes into and try again.
WRITE_BACK = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if redis.sha1hex(current) ~= ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[2], ARGV[3], ARGV[4])
if KEYS[2] then redis.call('ZADD', KEYS[2], 'XX', ARGV[6], ARGV[5]) end
return 1
"""

# Revoke one session of a user. KEYS: 1 the user's index, 2 the record. ARGV: 1 handle.
# Only a handle listed in this user's index is deleted: another user's handle is refused.
REVOKE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""
