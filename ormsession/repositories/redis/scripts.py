"""The Lua scripts behind every write: each check-and-write is one atomic EVALSHA.

A stored value is a 34-byte header and the data (see :mod:`.base`)::

    byte 1       format marker, 2
    bytes 2-9    version          (unsigned, big-endian)
    bytes 10-17  created          (microseconds since the Unix epoch, unsigned, big-endian)
    bytes 18-25  expires          (likewise)
    byte 26      the count bucket's level  (see ormsession.repositories.buckets)
    bytes 27-34  the count bucket's end    (seconds since the Unix epoch, unsigned)
    bytes 35-    the data

A session bound to a user (see :mod:`.users`) is stored in format 4: the same 34 bytes
(format marker 4), then::

    bytes 35-42  seen             (microseconds: the ``now`` of the last write)
    bytes 43-106 the user's index id: SHA-256 of the user id, 64 lowercase hex characters
    bytes 107-108 the length M of the owner fields
    bytes 109-   the owner fields: user id, handle, user agent, IP address, each a 2-byte
                 length (0xFFFF: none) and its UTF-8 bytes
    then         the data

so an unbound session reads and writes exactly the bytes it always did, and every write of
a bound one sets ``seen`` in the bytes it already rewrites (TOUCH's one SETRANGE covers
expiry, bucket and seen, which are contiguous).

A rename leaves a *moved marker* under the old key: a value of its own format, 81 bytes::

    byte 1       format marker, 3
    bytes 2-9    expires          (microseconds, unsigned, big-endian): the rename's expiry
    bytes 10-17  renamed          (likewise): the rename's ``now``
    bytes 18-81  the key the session moved to (the 64 lowercase hex characters)

It carries the same TTL as the moved record. It holds no data: ``live`` sees no session in
it, so read, update, touch and rename find nothing under the old key; CREATE refuses the
key while the marker's expiry is ahead of ``now``; DELETE removes it and returns the key it
names, which the repository deletes next (see ``RedisRepositoryBase.delete_flow``). Markers
are never in the count index. Only ``moved`` reads ``renamed``: it answers for
:data:`~ormsession.repositories.base.REPLACED_ID_GRACE_US` after the rename, however long
the marker stays.

A value of another format or length is not a session: scripts treat it as absent.

Scripts read only the header (GETRANGE 0 33; CREATE and DELETE at most a marker's 81
bytes; an update of a bound session its owner block too, which it keeps), so a
compare-and-set or a touch never copies the data through Lua (a login's RENAME without new
data does, once, to put the owner before it; a rename with data, as with encryption at
rest, writes the new data it is sent and never reads the old), and judge
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
    "OWNED_FORMAT",
    "OWNED_HEAD",
    "PARK",
    "PARK_TTL_MS",
    "RENAME",
    "REVOKE_HOP",
    "TOUCH",
    "UNPARK",
    "UPDATE",
    "USER_ADD",
    "USER_FORGET",
    "USER_LIST",
    "USER_REVOKE",
    "Script",
]

#: How long a parked record (a Cluster rename in flight) may outlive a crash of its mover.
PARK_TTL_MS = 60_000
#: The first byte of a moved marker, and its whole length (see the module docstring).
MARKER_FORMAT = 3
MARKER_SIZE = 81
#: The first byte of a bound session's value, and the length of its fixed part (header, seen,
#: user index id, owner fields' length).
OWNED_FORMAT = 4
OWNED_HEAD = 108


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
  if #h ~= 34 then return false end
  local f = string.byte(h, 1)
  if f ~= 2 and f ~= 4 then return false end
  if struct.unpack('>I8', h, 18) > now then return h end
  return false
end
"""

#: ``owner_block(key)``: bytes 43 on of a format 4 value, up to the data: the user's index id
#: (64 hex), the fields' length and the fields.
_OWNER_BLOCK = """
local function owner_block(key)
  local m = struct.unpack('>I2', redis.call('GETRANGE', key, 106, 107))
  return redis.call('GETRANGE', key, 42, 107 + m)
end
"""

#: ``user_index(session_key, id)``: the user index named by ``id``, under the session key's
#: prefix (``P{xx}:`` and 64 hex end a session key; ``P`` + ``user:`` + 64 hex a user index).
_USER_INDEX = """
local function user_index(key, id)
  return string.sub(key, 1, #key - 69) .. 'user:' .. id
end
"""

#: ``owner_block``, ``user_index`` and ``handle_of(block)``: the handle in an owner block.
#: (Split so that the hot scripts define only what they call: a definition runs on every
#: call of its script.)
_OWNER = (
    _OWNER_BLOCK
    + _USER_INDEX
    + """
local function handle_of(block)
  local at = 69 + struct.unpack('>I2', block, 67)
  return string.sub(block, at + 2, at + 1 + struct.unpack('>I2', block, at))
end
"""
)

#: ``bind(uidx, key, entry, until_ms)``: file a session key (its last 64 characters) in a
#: user index with ``entry`` (8 bytes of µs, when filed, and the handle), and keep the index
#: at least ``until_ms`` more (the longer of that and what it had; 0: no limit, PERSIST).
_BIND = """
local function bind(uidx, key, entry, until_ms)
  local pttl = redis.call('PTTL', uidx)
  redis.call('HSET', uidx, string.sub(key, -64), entry)
  if until_ms == 0 then
    redis.call('PERSIST', uidx)
  elseif pttl == -2 or (pttl >= 0 and pttl < until_ms) then
    redis.call('PEXPIRE', uidx, until_ms)
  end
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

#: KEYS: session, index[, user index]. ARGV: clock, value (a format 2 or 4 header with the
#: clock's bucket, and the data)[, the user index entry, the index's TTL (8 bytes, ms; 0:
#: none)]. Stores the value unless a live record or an unexpired moved marker holds the
#: key; trims the shard's index of members whose bucket ended by now (opportunistic
#: clean-up, so it never grows unbounded); with a user index (plain Redis, Sentinel), files
#: the key there in the same step.
CREATE = Script.define(
    "create",
    _INDEX,
    _BIND,
    _CLOCK,
    f"""
local v = redis.call('GETRANGE', KEYS[1], 0, {MARKER_SIZE - 1})
local f = string.byte(v, 1)
if (f == 2 or f == 4) and #v >= 34 and struct.unpack('>I8', v, 18) > now then return 0 end
if f == {MARKER_FORMAT} and #v == {MARKER_SIZE} and struct.unpack('>I8', v, 2) > now then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
index(KEYS[2], KEYS[1], last, now)
if KEYS[3] then bind(KEYS[3], KEYS[1], ARGV[3], struct.unpack('>I8', ARGV[4])) end
return 1
""",
)

#: KEYS: session, index. ARGV: clock followed by the expected and the new version (8 bytes
#: each, 49 bytes in all), data. Compare-and-set on the version; the creation time is
#: carried over from the stored header. The clock's bucket is the one the new expiry falls
#: in: the same bytes as the header's while the expiry stays in its bucket (no ZADD), else
#: the index follows.
#: A bound record (format 4) keeps its owner block and gets ``seen`` = now.
UPDATE = Script.define(
    "update",
    _LIVE,
    _OWNER_BLOCK,
    _INDEX,
    _CLOCK,
    """
local h = live(KEYS[1], now)
if not h or string.sub(h, 2, 9) ~= string.sub(ARGV[1], 34, 41) then return 0 end
if string.sub(h, 26, 34) ~= string.sub(ARGV[1], 25, 33) then index(KEYS[2], KEYS[1], last, now) end
local f = string.byte(h, 1)
local header = string.char(f) .. string.sub(ARGV[1], 42, 49) .. string.sub(h, 10, 17)
header = header .. string.sub(ARGV[1], 17, 33)
if f == 4 then header = header .. string.sub(ARGV[1], 1, 8) .. owner_block(KEYS[1]) end
redis.call('SET', KEYS[1], header .. ARGV[2], 'PX', ttl)
return 1
""",
)

#: KEYS: session, index. ARGV: clock. Rewrites only the header's expiry and bucket fields
#: (SETRANGE keeps the data and the TTL, which PEXPIRE then moves), and a bound record's
#: ``seen`` right after them; re-files the session only when the new expiry leaves the
#: bucket the header named.
TOUCH = Script.define(
    "touch",
    _LIVE,
    _INDEX,
    _CLOCK,
    """
local h = live(KEYS[1], now)
if not h then return 0 end
local fields = string.sub(ARGV[1], 17, 33)
if string.byte(h, 1) == 4 then fields = fields .. string.sub(ARGV[1], 1, 8) end
redis.call('SETRANGE', KEYS[1], 17, fields)
if string.sub(h, 26, 34) ~= string.sub(ARGV[1], 25, 33) then index(KEYS[2], KEYS[1], last, now) end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
""",
)

#: KEYS: session, index, its parking key. ARGV: ``s`` on plain Redis and Sentinel, ``c`` on
#: Cluster. Deletes the key and its parking key (a record parked by a Cluster rename in
#: flight: the rename then finds it gone and gives up) and the index member; with ``s``, a
#: bound record also leaves its user's index (on Cluster that index is in another slot: the
#: next listing or revoke prunes the entry). Returns the key a deleted moved marker named
#: (the caller deletes it next), else nil.
DELETE = Script.define(
    "delete",
    _USER_INDEX,
    f"""
local size = redis.call('STRLEN', KEYS[1])
local first = redis.call('GETRANGE', KEYS[1], 0, 0)
local marker = size == {MARKER_SIZE} and first == string.char({MARKER_FORMAT})
local to = marker and redis.call('GETRANGE', KEYS[1], {MARKER_SIZE - 64}, {MARKER_SIZE - 1})
if ARGV[1] == 's' and size >= {OWNED_HEAD} and first == string.char({OWNED_FORMAT}) then
  local id = redis.call('GETRANGE', KEYS[1], 42, 105)
  redis.call('HDEL', user_index(KEYS[1], id), string.sub(KEYS[1], -64))
end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], string.sub(KEYS[1], -64))
return to
""",
)

#: ``moved(clock, key)``: the moved marker a rename with the clock argument ``clock`` leaves:
#: naming ``key`` (its last 64 characters), expiring at the clock's expiry (bytes 17-24),
#: renamed at its ``now`` (bytes 1-8).
_MOVED = f"""
local function moved(clock, key)
  local times = string.sub(clock, 17, 24) .. string.sub(clock, 1, 8)
  return string.char({MARKER_FORMAT}) .. times .. string.sub(key, -64)
end
"""

#: KEYS: old, old index, new, new index (one slot in Cluster mode)[, the new owner's user
#: index]. ARGV: clock (33 bytes; 41 when the expected version follows it: a rename *with
#: data*), mode (``s``: plain Redis or Sentinel, ``c``: Cluster), the new data (used only
#: with the expected version; empty otherwise)[, the new owner block (bytes 43 on of a
#: format 4 value, up to the data), its index entry, the index's TTL (8 bytes, ms; 0:
#: none)]. RENAME keeps version and creation time, and the data unless new data is given:
#: then it moves only a record at the expected version (else it changes nothing and returns
#: 0), and the new key gets the header and owner block with the new data (the old bytes go
#: with the old value, which the marker replaces). The new expiry and the clock's bucket go
#: into the header, the expiry into the TTL; the new key is filed under the clock's bucket.
#: The old key gets a moved marker naming the new one, with the same expiry and TTL and the
#: clock's now as the rename's time. A bound record gets ``seen`` = now, and its user index
#: entry moves to the new key. With an owner (a login) the record is rewritten as bound to
#: it: it leaves its previous owner's index and joins the new one's. In Cluster mode a bound
#: record's user index lives in another slot: the script changes nothing and returns 2, and
#: the repository moves it by the cross-slot protocol instead.
RENAME = Script.define(
    "rename",
    _LIVE,
    _OWNER,
    _BIND,
    _INDEX,
    _MOVED,
    _CLOCK,
    """
local h = live(KEYS[1], now)
if not h then return 0 end
local sealed = #ARGV[1] > 33
if sealed and string.sub(h, 2, 9) ~= string.sub(ARGV[1], 34, 41) then return 0 end
local f = string.byte(h, 1)
if ARGV[2] == 'c' and f == 4 then return 2 end
local fields, seen = string.sub(ARGV[1], 17, 33), string.sub(ARGV[1], 1, 8)
if ARGV[4] then
  local from = 34
  if f == 4 then
    local block = owner_block(KEYS[1])
    redis.call('HDEL', user_index(KEYS[1], string.sub(block, 1, 64)), string.sub(KEYS[1], -64))
    from = 42 + #block
  end
  local data = ARGV[3]
  if not sealed then data = redis.call('GETRANGE', KEYS[1], from, -1) end
  local value = string.char(4) .. string.sub(h, 2, 17) .. fields .. seen .. ARGV[4] .. data
  redis.call('SET', KEYS[3], value, 'PX', ttl)
  bind(KEYS[5], KEYS[3], ARGV[5], struct.unpack('>I8', ARGV[6]))
elseif sealed then
  local value = string.char(f) .. string.sub(h, 2, 17) .. fields
  if f == 4 then
    local block = owner_block(KEYS[1])
    local uidx = user_index(KEYS[1], string.sub(block, 1, 64))
    redis.call('HDEL', uidx, string.sub(KEYS[1], -64))
    bind(uidx, KEYS[3], seen .. handle_of(block), ttl)
    value = value .. seen .. block
  end
  redis.call('SET', KEYS[3], value .. ARGV[3], 'PX', ttl)
else
  redis.call('RENAME', KEYS[1], KEYS[3])
  if f == 4 then
    redis.call('SETRANGE', KEYS[3], 17, fields .. seen)
    local block = owner_block(KEYS[3])
    local uidx = user_index(KEYS[3], string.sub(block, 1, 64))
    redis.call('HDEL', uidx, string.sub(KEYS[1], -64))
    bind(uidx, KEYS[3], seen .. handle_of(block), ttl)
  else
    redis.call('SETRANGE', KEYS[3], 17, fields)
  end
  redis.call('PEXPIRE', KEYS[3], ttl)
end
redis.call('SET', KEYS[1], moved(ARGV[1], KEYS[3]), 'PX', ttl)
redis.call('ZREM', KEYS[2], string.sub(KEYS[1], -64))
index(KEYS[4], KEYS[3], last, now)
return 1
""",
)

#: ``head(key)``: a stored value's bytes up to its data (the header, and a bound value's
#: seen and owner block).
_HEAD = """
local function head(key)
  local h = redis.call('GETRANGE', key, 0, 33)
  if string.byte(h, 1) ~= 4 then return h end
  local m = struct.unpack('>I2', redis.call('GETRANGE', key, 106, 107))
  return redis.call('GETRANGE', key, 0, 107 + m)
end
"""

#: Step 1 of a rename across Cluster slots, and the step that decides it. KEYS: old, old
#: index, parking key (same slot). ARGV: the rename's clock (41 bytes for a rename with
#: data: the expected version follows), the new key (64 hex). Moves a live record aside,
#: where reads and writes do not see it (its TTL capped at PARK_TTL_MS), puts a moved marker
#: naming the new key (with the rename's expiry, TTL and now) under the old key, and returns the
#: record. With an expected version only a record at that version is parked (else nothing
#: changes and nil is returned: a write came in first), and only its head is returned (the
#: copy writes the caller's new data; the old data never leaves the server). From the park
#: on, an update or touch of the old key finds the marker and fails, so the version checked
#: here is the version of the record that moves. Repeating it (a retried command whose
#: reply was lost) finds its own marker and returns the parked record again instead of
#: losing it; a rename to another key finds a marker that is not its own and gets nil, so of
#: two racing renames one wins.
PARK = Script.define(
    "park",
    _LIVE,
    _MOVED,
    _HEAD,
    _CLOCK,
    f"""
local marker = moved(ARGV[1], ARGV[2])
local sealed = #ARGV[1] > 33
local h = live(KEYS[1], now)
if h and (not sealed or string.sub(h, 2, 9) == string.sub(ARGV[1], 34, 41)) then
  redis.call('RENAME', KEYS[1], KEYS[3])
  if redis.call('PTTL', KEYS[3]) > {PARK_TTL_MS} then
    redis.call('PEXPIRE', KEYS[3], {PARK_TTL_MS})
  end
  redis.call('ZREM', KEYS[2], string.sub(KEYS[1], -64))
  redis.call('SET', KEYS[1], marker, 'PX', ttl)
end
if redis.call('GET', KEYS[1]) == marker and live(KEYS[3], now) then
  if sealed then return head(KEYS[3]) end
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


# -- the user index (see ormsession.repositories.redis.users) -----------------------------------

#: ``owned_by(key, now, id, handle)``: the owner block of a live record under ``key`` bound
#: to the user whose index id is ``id`` (and, unless ``handle`` is empty, with that handle),
#: else false. ``hop(key, idx, parking, now, id, handle)``: one step of a revoke (see
#: REVOKE_HOP).
_HOP = f"""
local function owned_by(key, now, id, handle)
  local h = live(key, now)
  if not h or string.byte(h, 1) ~= 4 then return false end
  local block = owner_block(key)
  if string.sub(block, 1, 64) ~= id then return false end
  if handle ~= '' and handle_of(block) ~= handle then return false end
  return block
end
local function hop(key, idx, parking, now, id, handle)
  local v = redis.call('GETRANGE', key, 0, {MARKER_SIZE - 1})
  if #v == {MARKER_SIZE} and string.byte(v, 1) == {MARKER_FORMAT} then
    local to = string.sub(v, {MARKER_SIZE - 63}, {MARKER_SIZE})
    local parked = owned_by(parking, now, id, handle)
    if parked then
      redis.call('DEL', key, parking)
      return {{handle_of(parked), to, 'ended'}}
    end
    return {{'', to, 'marker'}}
  end
  local block = owned_by(key, now, id, handle)
  if not block then
    if #v == 0 then return {{'', '', 'none'}} end
    return {{'', '', 'other'}}
  end
  redis.call('DEL', key, parking)
  redis.call('ZREM', idx, string.sub(key, -64))
  return {{handle_of(block), '', 'ended'}}
end
"""

#: One step of a revoke on Cluster. KEYS: a session key, its count index, its parking key.
#: ARGV: clock, the user's index id, the handle ('' for any). A live record of that user
#: (and handle) is deleted. A moved marker is followed, not deleted (the rename it names
#: is done, and the record it leads to may be another user's since a login), unless its
#: parking key holds that user's record: a move in flight, which the destroy wins (marker
#: and parked copy go; the mover finds its marker gone and deletes its copy). Returns
#: {the ended session's handle or '', the key a marker names or '', what was there:
#: ``ended``, ``marker``, ``none`` (nothing) or ``other`` (a record not that user's)}.
REVOKE_HOP = Script.define(
    "revoke_hop",
    _LIVE,
    _OWNER,
    _HOP,
    _CLOCK,
    """
return hop(KEYS[1], KEYS[2], KEYS[3], now, ARGV[2], ARGV[3])
""",
)

#: ``tag(key64, prefix)``: the hash-tagged key name start of a session key (see base.py).
_TAG = """
local function tag(prefix, key)
  return prefix .. '{' .. string.sub(key, 1, 2) .. '}:'
end
"""

#: revoke and revoke_all on plain Redis and Sentinel, in one step. KEYS: the user index.
#: ARGV: clock, the handle ('' for all), the key to keep ('' for none). Ends each session
#: the index names (with that handle) as REVOKE_HOP does, following moved markers, never
#: the kept one, and drops the entries it went through. Returns how many sessions ended.
USER_REVOKE = Script.define(
    "user_revoke",
    _LIVE,
    _OWNER,
    _HOP,
    _TAG,
    _CLOCK,
    """
local prefix = string.sub(KEYS[1], 1, #KEYS[1] - 69)
local id = string.sub(KEYS[1], -64)
local entries = redis.call('HGETALL', KEYS[1])
local ended, count, seen = {}, 0, {}
for i = 1, #entries, 2 do
  local key = entries[i]
  if key ~= ARGV[3] and (ARGV[2] == '' or string.sub(entries[i + 1], 9) == ARGV[2]) then
    local at = key
    while at ~= '' and at ~= ARGV[3] and not seen[at] do
      seen[at] = true
      local t = tag(prefix, at)
      local r = hop(t .. at, t .. 'index', t .. 'moving:' .. at, now, id, ARGV[2])
      if r[1] ~= '' and not ended[r[1]] then
        ended[r[1]] = true
        count = count + 1
      end
      at = r[2]
    end
    redis.call('HDEL', KEYS[1], key)
  end
end
return count
""",
)

#: sessions_of on plain Redis and Sentinel, in one step. KEYS: the user index. ARGV: clock.
#: Returns {key, head, key, head, ...}: each live session of that user and the bytes of its
#: value up to the data (header, seen, owner block); drops the entries of anything else.
USER_LIST = Script.define(
    "user_list",
    _LIVE,
    _OWNER,
    _HOP,
    _TAG,
    _CLOCK,
    f"""
local prefix = string.sub(KEYS[1], 1, #KEYS[1] - 69)
local id = string.sub(KEYS[1], -64)
local keys = redis.call('HKEYS', KEYS[1])
local out = {{}}
for _, key in ipairs(keys) do
  local name = tag(prefix, key) .. key
  local block = owned_by(name, now, id, '')
  if block then
    out[#out + 1] = key
    out[#out + 1] = redis.call('GETRANGE', name, 0, {OWNED_HEAD - 67} + #block)
  else
    redis.call('HDEL', KEYS[1], key)
  end
end
return out
""",
)

#: Step 1 of a create or a move with an owner on Cluster, before the session key is
#: written (so the index never misses a live session). KEYS: the user index. ARGV: the
#: session key (64 hex), the entry, the index's TTL (8 bytes, ms; 0: none).
USER_ADD = Script.define(
    "user_add",
    _BIND,
    """
bind(KEYS[1], ARGV[1], ARGV[2], struct.unpack('>I8', ARGV[3]))
return 1
""",
)

#: Drop entries from a user index. KEYS: the user index. ARGV: the session keys (64 hex).
USER_FORGET = Script.define(
    "user_forget",
    """
return redis.call('HDEL', KEYS[1], unpack(ARGV))
""",
)
