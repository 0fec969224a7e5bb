"""The Lua scripts, run with EVAL so that a script is never missing on a new or failed-over
server. Each touches only keys of one hash tag, so it runs unchanged on Redis Cluster."""

from __future__ import annotations

# The current epoch at `key`, created as `candidate` if there is none; a TTL shorter than
# `ttl` ms is extended so that the epoch outlives every session stamped with it.
_ENSURE = """
local function ensure(key, candidate, ttl)
  local e = redis.call('GET', key)
  if not e then
    redis.call('SET', key, candidate, 'PX', ttl)
    return candidate
  end
  local left = redis.call('PTTL', key)
  if left >= 0 and left < tonumber(ttl) then redis.call('PEXPIRE', key, ttl) end
  return e
end
"""

# KEYS[1] epoch key; ARGV[1] candidate epoch, ARGV[2] epoch TTL ms.
ENSURE_EPOCH = _ENSURE + "return ensure(KEYS[1], ARGV[1], ARGV[2])\n"

# Login. KEYS[1] the new session record; KEYS[2] the epoch key, absent when the epoch is
# kept elsewhere. ARGV: 1 mode ('ensure' | 'cache' | 'given'), 2 epoch (candidate or
# known), 3 epoch TTL ms, 4 record head, 5 record tail, 6 record TTL ms.
LOGIN = (
    _ENSURE
    + """
local e = ARGV[2]
if ARGV[1] == 'ensure' then
  e = ensure(KEYS[2], e, ARGV[3])
elseif ARGV[1] == 'cache' then
  redis.call('SET', KEYS[2], e, 'PX', ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[4] .. e .. ARGV[5], 'PX', ARGV[6], 'NX')
return e
"""
)
