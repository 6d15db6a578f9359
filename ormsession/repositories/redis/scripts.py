"""The Lua scripts behind every write: each check-and-write is one atomic EVALSHA.

A stored value is a 25-byte header and the data (see :mod:`.base`)::

    byte 1       format marker, 1
    bytes 2-9    version          (unsigned, big-endian)
    bytes 10-17  created_at       (microseconds since the Unix epoch, unsigned, big-endian)
    bytes 18-25  expires_at       (likewise)
    bytes 26-    the data

Scripts read only the header (GETRANGE 0 24), so a compare-and-set or a touch never copies
the data through Lua, and judge liveness by the ``now`` the caller passes (ARGV[1], in
microseconds), as the repository contract demands, not by Redis' own clock. Integers cross
into ``redis.call`` as the caller's decimal strings, never as Lua numbers: Lua would format
a 16-digit microsecond value as ``1.76e+15``.

Every key a script creates gets its TTL inside the same script, so no key ever exists
without one: session values via ``SET ... PX``, the count index via ``PEXPIRE`` right after
``ZADD`` (extended only, so it outlives every member), a parked record keeps its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["CREATE", "DELETE", "DISCARD", "PARK", "RENAME", "TOUCH", "UNPARK", "UPDATE", "Script"]


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script and its SHA1, for EVALSHA (EVAL once when the server lacks it)."""

    name: str
    source: str
    sha: str

    @classmethod
    def define(cls, name: str, body: str) -> Script:
        source = _prelude_for(body) + body
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        return cls(name, source, sha)


# Helpers a script body may call; each script defines only those it uses, since the
# definitions run on every call (defining all three cost ~1 µs of server time per write).
# live: the header of a live record under key, judged by now (microseconds), or false;
#   the expiry is an unsigned big-endian 8-byte field, exact as a Lua number below 2^53
#   (microseconds until the year 2255).
# index: add a member to a shard's count index and make the index outlive it.
_HELPERS = {
    "live": """
local function live(key, now)
  local h = redis.call('GETRANGE', key, 0, 24)
  if #h == 25 and string.byte(h, 1) == 1 and struct.unpack('>I8', h, 18) > now then
    return h
  end
  return false
end
""",
    "index": """
local function index(idx, member, score, ttl)
  redis.call('ZADD', idx, score, member)
  if redis.call('PTTL', idx) < tonumber(ttl) then redis.call('PEXPIRE', idx, ttl) end
end
""",
}


def _prelude_for(body: str) -> str:
    return "".join(code for name, code in _HELPERS.items() if f"{name}(" in body)


#: KEYS: session, index. ARGV: now, ttl_ms, expires (score), member, value.
#: Stores the value unless a live record holds the key; trims the shard's index of members
#: that expired by now (opportunistic clean-up, so the index never grows without bound).
CREATE = Script.define(
    "create",
    """
if live(KEYS[1], tonumber(ARGV[1])) then return 0 end
redis.call('SET', KEYS[1], ARGV[5], 'PX', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
index(KEYS[2], ARGV[4], ARGV[3], ARGV[2])
return 1
""",
)

#: KEYS: session, index. ARGV: now, ttl_ms, expires (score), member, expected version (8
#: bytes), new version (8 bytes), expires (8 bytes), data. Compare-and-set on the version;
#: the creation time is carried over from the stored header.
UPDATE = Script.define(
    "update",
    """
local h = live(KEYS[1], tonumber(ARGV[1]))
if not h or string.sub(h, 2, 9) ~= ARGV[5] then return 0 end
local value = string.char(1) .. ARGV[6] .. string.sub(h, 10, 17) .. ARGV[7] .. ARGV[8]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
index(KEYS[2], ARGV[4], ARGV[3], ARGV[2])
return 1
""",
)

#: KEYS: session, index. ARGV: now, ttl_ms, expires (score), member, expires (8 bytes).
#: Rewrites only the header's expiry field (SETRANGE keeps the data and the TTL, which
#: PEXPIRE then moves).
TOUCH = Script.define(
    "touch",
    """
if not live(KEYS[1], tonumber(ARGV[1])) then return 0 end
redis.call('SETRANGE', KEYS[1], 17, ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
index(KEYS[2], ARGV[4], ARGV[3], ARGV[2])
return 1
""",
)

#: KEYS: session, index. ARGV: member.
DELETE = Script.define(
    "delete",
    """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
""",
)

#: KEYS: old, old index, new, new index (one slot in Cluster mode). ARGV: now, ttl_ms,
#: expires (score), old member, new member, expires (8 bytes). RENAME keeps data, version
#: and creation time; the new expiry goes into the header and the TTL.
RENAME = Script.define(
    "rename",
    """
if not live(KEYS[1], tonumber(ARGV[1])) then return 0 end
redis.call('RENAME', KEYS[1], KEYS[3])
redis.call('SETRANGE', KEYS[3], 17, ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[4])
index(KEYS[4], ARGV[5], ARGV[3], ARGV[2])
return 1
""",
)

#: Step 1 of a rename across Cluster slots. KEYS: old, old index, parking key (same slot).
#: ARGV: now, old member, parking TTL cap (ms). Moves a live record aside, where reads do
#: not see it, and returns it. Repeating it (a retried command whose reply was lost)
#: returns the parked record again instead of losing it.
PARK = Script.define(
    "park",
    """
if live(KEYS[1], tonumber(ARGV[1])) then
  redis.call('RENAME', KEYS[1], KEYS[3])
  if redis.call('PTTL', KEYS[3]) > tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[3], ARGV[3])
  end
  redis.call('ZREM', KEYS[2], ARGV[2])
end
if live(KEYS[3], tonumber(ARGV[1])) then return redis.call('GET', KEYS[3]) end
return false
""",
)

#: Roll back a PARK. KEYS: parking key, old, old index. ARGV: ttl_ms, expires (score),
#: old member. Only when the old key is still free.
UNPARK = Script.define(
    "unpark",
    """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
index(KEYS[3], ARGV[3], ARGV[2], ARGV[1])
return 1
""",
)

#: Step 3 of a rename across Cluster slots: drop the parked copy. KEYS: parking key.
DISCARD = Script.define(
    "discard",
    """
return redis.call('DEL', KEYS[1])
""",
)
