"""The Lua scripts behind every write: each check-and-write is one atomic EVALSHA.

A stored value is a 34-byte header and the data (see :mod:`.base`)::

    byte 1       format marker, 2
    bytes 2-9    version          (unsigned, big-endian)
    bytes 10-17  created          (microseconds since the Unix epoch, unsigned, big-endian)
    bytes 18-25  expires          (likewise)
    byte 26      the count bucket's level  (see ormsession.repositories.buckets)
    bytes 27-34  the count bucket's end    (seconds since the Unix epoch, unsigned)
    bytes 35-    the data

A rename leaves a *moved marker* under the old key: a value of its own format, 73 bytes::

    byte 1       format marker, 3
    bytes 2-9    expires          (microseconds, unsigned, big-endian): the rename's expiry
    bytes 10-73  the key the session moved to (the 64 lowercase hex characters)

It carries the same TTL as the moved record. It holds no data: ``live`` sees no session in
it, so read, update, touch and rename find nothing under the old key; CREATE refuses the
key while the marker's expiry is ahead of ``now``; DELETE removes it and returns the key it
names, which the repository deletes next (see ``RedisRepositoryBase.delete_flow``). Markers
are never in the count index.

A value of another format or length is not a session: scripts treat it as absent.

Scripts read only the header (GETRANGE 0 33; CREATE and DELETE at most a marker's 73
bytes), so a compare-and-set or a touch never copies the data through Lua, and judge
liveness by the ``now`` the caller passes, as the repository contract demands, not by
Redis' own clock.

Arguments are few on purpose: redis-py encodes every argument of every call in Python, so
each one costs the client about a microsecond on the write path. The times travel as one
*clock* argument of fixed-width unsigned big-endian fields::

    bytes 1-8    now              (microseconds since the Unix epoch)
    bytes 9-16   the TTL to set   (milliseconds)
    bytes 17-24  expires          (microseconds), also the header's expiry field as is
    byte 25      the level and
    bytes 26-33  the end of the bucket the expiry falls in (bytes 17-33 are the header's
                 bytes 18-34 as they are)

unpacked with ``struct.unpack`` into Lua numbers (exact below 2^53: microseconds until the
year 2255). A Lua number handed to ``redis.call`` is formatted with ``%.17g``, exact for
such integers; ``tostring`` and ``..`` would use ``%.14g`` (``1.76e+15``), so the scripts
never turn a time into text themselves. A count-index member is the session key's last 64
characters (the hex key the manager passed), read off ``KEYS`` instead of sent again.

The count index files a session under its bucket's end, not its expiry: a write whose new
expiry stays in the bucket the header names (most writes of an active session: the caller
places the expiry with :func:`~ormsession.repositories.buckets.place`, and a session's
lifetime, hence its bucket width, stays the same from write to write) leaves the index
alone, and so costs the server no ZADD (nor a replica its replay); the script only compares
the header's bucket bytes with the clock's. Count then includes
a session for at most one bucket width after it expired and never misses a live one.

Every key a script creates gets its TTL inside the same script, so no key ever exists
without one: session values via ``SET ... PX``, the count index via ``PEXPIRE`` right after
``ZADD`` (extended only, to the end of the member's bucket, so it outlives every member),
a parked record keeps its own (capped at :data:`PARK_TTL_MS`), a moved marker gets the
rename's TTL in the script that writes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = [
    "CREATE",
    "DELETE",
    "DISCARD",
    "MARKER_FORMAT",
    "MARKER_SIZE",
    "PARK",
    "PARK_TTL_MS",
    "RENAME",
    "TOUCH",
    "UNPARK",
    "UPDATE",
    "Script",
]

#: How long a parked record (a Cluster rename in flight) may outlive a crash of its mover.
PARK_TTL_MS = 60_000
#: The first byte of a moved marker, and its whole length (see the module docstring).
MARKER_FORMAT = 3
MARKER_SIZE = 73


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script and its SHA1, for EVALSHA (EVAL once when the server lacks it)."""

    name: str
    source: str
    sha: str

    @classmethod
    def define(cls, name: str, *parts: str) -> Script:
        source = "".join(parts)
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        return cls(name, source, sha)


# Functions a script may call, defined in each script that calls them (each definition
# runs on every call of its script).

#: ``live(key, now)``: the header of a live record under ``key``, judged by ``now`` (µs), or
#: false.
_LIVE = """
local function live(key, now)
  local h = redis.call('GETRANGE', key, 0, 33)
  if #h ~= 34 or string.byte(h, 1) ~= 2 then return false end
  if struct.unpack('>I8', h, 18) > now then return h end
  return false
end
"""

#: ``index(idx, key, last, now)``: file a session key's member under a bucket's end
#: (``last``, in seconds; the score is in µs) in its shard's count index ``idx``, and make
#: the index outlive that bucket.
_INDEX = """
local function index(idx, key, last, now)
  redis.call('ZADD', idx, last * 1000000, string.sub(key, -64))
  local ttl = last * 1000 - math.floor(now / 1000) + 1
  if redis.call('PTTL', idx) < ttl then redis.call('PEXPIRE', idx, ttl) end
end
"""

#: Unpacks the clock argument (see the module docstring) into Lua numbers.
_CLOCK = "local now, ttl, expires, level, last = struct.unpack('>I8I8I8BI8', ARGV[1])\n"

#: KEYS: session, index. ARGV: clock, value (a format 2 header with the clock's bucket, and
#: the data). Stores the value unless a live record or an unexpired moved marker holds the
#: key; trims the shard's index of members whose bucket ended by now (opportunistic
#: clean-up, so it never grows unbounded).
CREATE = Script.define(
    "create",
    _INDEX,
    _CLOCK,
    f"""
local v = redis.call('GETRANGE', KEYS[1], 0, {MARKER_SIZE - 1})
local f = string.byte(v, 1)
if f == 2 and #v >= 34 and struct.unpack('>I8', v, 18) > now then return 0 end
if f == {MARKER_FORMAT} and #v == {MARKER_SIZE} and struct.unpack('>I8', v, 2) > now then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
index(KEYS[2], KEYS[1], last, now)
return 1
""",
)

#: KEYS: session, index. ARGV: clock followed by the expected and the new version (8 bytes
#: each, 49 bytes in all), data. Compare-and-set on the version; the creation time is
#: carried over from the stored header. The clock's bucket is the one the new expiry falls
#: in: the same bytes as the header's while the expiry stays in its bucket (no ZADD), else
#: the index follows.
UPDATE = Script.define(
    "update",
    _LIVE,
    _INDEX,
    _CLOCK,
    """
local h = live(KEYS[1], now)
if not h or string.sub(h, 2, 9) ~= string.sub(ARGV[1], 34, 41) then return 0 end
if string.sub(h, 26, 34) ~= string.sub(ARGV[1], 25, 33) then index(KEYS[2], KEYS[1], last, now) end
local header = string.char(2) .. string.sub(ARGV[1], 42, 49) .. string.sub(h, 10, 17)
redis.call('SET', KEYS[1], header .. string.sub(ARGV[1], 17, 33) .. ARGV[2], 'PX', ttl)
return 1
""",
)

#: KEYS: session, index. ARGV: clock. Rewrites only the header's expiry and bucket fields
#: (SETRANGE keeps the data and the TTL, which PEXPIRE then moves); re-files the session
#: only when the new expiry leaves the bucket the header named.
TOUCH = Script.define(
    "touch",
    _LIVE,
    _INDEX,
    _CLOCK,
    """
local h = live(KEYS[1], now)
if not h then return 0 end
redis.call('SETRANGE', KEYS[1], 17, string.sub(ARGV[1], 17, 33))
if string.sub(h, 26, 34) ~= string.sub(ARGV[1], 25, 33) then index(KEYS[2], KEYS[1], last, now) end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
""",
)

#: KEYS: session, index, its parking key. Deletes the key and its parking key (a record
#: parked by a Cluster rename in flight: the rename then finds it gone and gives up) and
#: the index member. Returns the key a deleted moved marker named (the caller deletes it
#: next), else nil.
DELETE = Script.define(
    "delete",
    f"""
local marker = redis.call('STRLEN', KEYS[1]) == {MARKER_SIZE}
  and redis.call('GETRANGE', KEYS[1], 0, 0) == string.char({MARKER_FORMAT})
local to = marker and redis.call('GETRANGE', KEYS[1], 9, {MARKER_SIZE - 1})
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], string.sub(KEYS[1], -64))
return to
""",
)

#: ``moved(expires_field, key)``: the moved marker naming ``key`` (its last 64 characters),
#: expiring at the 8-byte ``expires_field`` (the clock argument's bytes 17-24).
_MOVED = f"""
local function moved(expires_field, key)
  return string.char({MARKER_FORMAT}) .. expires_field .. string.sub(key, -64)
end
"""

#: KEYS: old, old index, new, new index (one slot in Cluster mode). ARGV: clock. RENAME
#: keeps data, version and creation time; the new expiry and the clock's bucket go into the
#: header, the expiry into the TTL; the new key is filed under the clock's bucket. The old
#: key gets a moved marker naming the new one, with the same expiry and TTL.
RENAME = Script.define(
    "rename",
    _LIVE,
    _INDEX,
    _MOVED,
    _CLOCK,
    """
if not live(KEYS[1], now) then return 0 end
redis.call('RENAME', KEYS[1], KEYS[3])
redis.call('SETRANGE', KEYS[3], 17, string.sub(ARGV[1], 17, 33))
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('SET', KEYS[1], moved(string.sub(ARGV[1], 17, 24), KEYS[3]), 'PX', ttl)
redis.call('ZREM', KEYS[2], string.sub(KEYS[1], -64))
index(KEYS[4], KEYS[3], last, now)
return 1
""",
)

#: Step 1 of a rename across Cluster slots. KEYS: old, old index, parking key (same slot).
#: ARGV: the rename's clock, the new key (64 hex). Moves a live record aside, where reads do
#: not see it (its TTL capped at PARK_TTL_MS), puts a moved marker naming the new key (with
#: the rename's expiry and TTL) under the old key, and returns the record. Repeating it (a
#: retried command whose reply was lost) finds its own marker and returns the parked record
#: again instead of losing it; a rename to another key finds a marker that is not its own
#: and gets nil, so of two racing renames one wins.
PARK = Script.define(
    "park",
    _LIVE,
    _MOVED,
    _CLOCK,
    f"""
local marker = moved(string.sub(ARGV[1], 17, 24), ARGV[2])
if live(KEYS[1], now) then
  redis.call('RENAME', KEYS[1], KEYS[3])
  if redis.call('PTTL', KEYS[3]) > {PARK_TTL_MS} then
    redis.call('PEXPIRE', KEYS[3], {PARK_TTL_MS})
  end
  redis.call('ZREM', KEYS[2], string.sub(KEYS[1], -64))
  redis.call('SET', KEYS[1], marker, 'PX', ttl)
end
if redis.call('GET', KEYS[1]) == marker and live(KEYS[3], now) then
  return redis.call('GET', KEYS[3])
end
return false
""",
)

#: Roll back a PARK. KEYS: parking key, old, old index. ARGV: clock (of the parked record's
#: expiry and the bucket its header names), the marker PARK left. Puts the record back in
#: place of that marker (or of nothing, if the marker's TTL ran out); not when a DELETE
#: removed marker and parked record (a destroy wins), nor over anything else.
UNPARK = Script.define(
    "unpark",
    _INDEX,
    _CLOCK,
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local v = redis.call('GET', KEYS[2])
if v and v ~= ARGV[2] then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PEXPIRE', KEYS[2], ttl)
index(KEYS[3], KEYS[2], last, now)
return 1
""",
)

#: Step 3 of a rename across Cluster slots: drop the parked copy. KEYS: parking key, old.
#: ARGV: the marker PARK left. Returns 1 while that marker still stands, 0 when it is gone:
#: a DELETE of the old key removed it (and the parked copy) meanwhile, so the rename lost
#: to a destroy. Repeatable (a DELETE removes marker and parked copy together).
DISCARD = Script.define(
    "discard",
    """
local kept = redis.call('GET', KEYS[2]) == ARGV[1]
redis.call('DEL', KEYS[1])
if kept then return 1 end
return 0
""",
)
