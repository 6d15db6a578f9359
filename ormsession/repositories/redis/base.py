"""What the sync and async Redis repositories share, with no I/O: key layout, record
encoding, the command each operation sends and the reading of its reply.

A contract method builds its one command here (:class:`Get`, :class:`Eval`,
:class:`SetIfEqual`, :class:`CountLive`, :class:`TrimIndexes`, :class:`HashEntries` or
:class:`Heads`), runs it through its twin's
one I/O method, ``_execute``, and reads the reply here. Every write is one Lua script
(:mod:`.scripts`), except the common update on a server with ``SET ... IFEQ`` (Valkey 8.1
and later; see :meth:`RedisRepositoryBase.update_flow`). The operations that may take
several round trips are flows that the twins drive with :func:`ormsession.flows.run` and
:func:`~ormsession.flows.arun`: a rename between Cluster slots
(:meth:`RedisRepositoryBase.rename_flow`; a failed command is thrown into it as a
:class:`~ormsession.errors.StoreError`, so its roll-back is written once), a delete that
follows moved markers (:meth:`RedisRepositoryBase.delete_flow`) and an update (one IFEQ, or
the script when IFEQ cannot decide).

Key layout (``P`` is the key prefix, ``h`` the 64-hex key the manager hands in)::

    P{h[:2]}:h           one session: header + data, with a native TTL; after a rename, a
                         moved marker naming the new key and the rename's time, with the
                         rename's TTL
    P{h[:2]}:index       count index of shard h[:2]: member h, score its count bucket's end (µs)
    P{h[:2]}:moving:h    a session parked while it moves between Cluster slots
    Puser:u              a user's index (see :mod:`.users`; u: SHA-256 of the user id)

The braces are a Redis Cluster hash tag: a session, its index shard and its parking key
share one slot, so every script touches a single slot. The 256 tags spread sessions over
all masters, and ``count`` sums 256 ZCOUNTs. The same layout is used on plain Redis and
Sentinel, so data can move between the three unchanged.
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ormsession.errors import ConfigurationError, StoreError, StoreUnavailableError
from ormsession.flows import Flow
from ormsession.repositories.base import (
    OwnedSession,
    Owner,
    StoredSession,
    marker_answers,
)
from ormsession.repositories.buckets import (
    DEFAULT_RESOLUTION,
    UNCOUNTED,
    Bucket,
    checked_resolution,
    place,
)
from ormsession.repositories.redis import scripts, users
from ormsession.repositories.redis.clients import describe_client, is_cluster_client
from ormsession.repositories.redis.errors import wrap_redis_error
from ormsession.repositories.redis.recent import DEFAULT_MAX_ENTRIES, RecentValues
from ormsession.repositories.redis.scripts import (
    MARKER_FORMAT,
    MARKER_SIZE,
    OWNED_FORMAT,
    PARK_TTL_MS,
    Script,
)

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_WAIT_TIMEOUT_MS",
    "HEADER_SIZE",
    "MAX_PREFIX_LENGTH",
    "PARK_TTL_MS",
    "SHARDS",
    "Command",
    "CountLive",
    "Eval",
    "Get",
    "HashEntries",
    "Heads",
    "KeyLayout",
    "Marker",
    "RedisRepositoryBase",
    "SetIfEqual",
    "TrimIndexes",
    "check_acknowledged",
    "clock_arg",
    "decode_marker",
    "decode_record",
    "encode_marker",
    "encode_record",
    "stored_bucket",
    "ttl_millis",
    "validate_key_prefix",
]

logger = logging.getLogger("ormsession.redis")

DEFAULT_KEY_PREFIX = "ormsession:"
DEFAULT_WAIT_TIMEOUT_MS = 1000
MAX_PREFIX_LENGTH = 128
#: Index shards = hash tags: two hex digits of the key. Part of the key layout: changing it
#: would move every session to another key.
SHARDS = 256
# Format marker, version, created µs, expires µs, count bucket level and end (s); see
# scripts.py.
_HEADER = struct.Struct(">BQQQBQ")
#: The bytes before the data in a stored value.
HEADER_SIZE = _HEADER.size
_FORMAT = 2
# The scripts' clock argument (now µs, TTL ms, expires µs, bucket level, bucket end s);
# UPDATE's is followed by the expected and the new version.
_CLOCK = struct.Struct(">QQQBQ")
_VERSIONS = struct.Struct(">QQ")
_SEEN = struct.Struct(">Q")
# A moved marker: format, expires µs, renamed µs, the 64-hex key moved to (see scripts.py).
_MARKER = struct.Struct(">BQQ64s")
assert _MARKER.size == MARKER_SIZE
_SESSION_KEY = re.compile(r"[0-9a-f]{64}")
#: Values kept for IFEQ while it is not known whether the server has it.
UNPROVEN_ENTRIES = 64
# Glob characters would make SCAN patterns (ours and operators') match other apps' keys;
# braces would change the Cluster hash tag; backslash escapes globs.
_FORBIDDEN_IN_PREFIX = set("*?[]{}\\")


# -- values (times in µs, as the header keeps them) ------------------------------------------
def ttl_millis(expires_us: int, now_us: int) -> int:
    """The native TTL for a record expiring at ``expires_us``, judged at ``now_us``: rounded
    up (Redis never drops a record before the manager considers it expired), at least 1 ms
    (Redis rejects 0)."""
    return max(1, -(-(expires_us - now_us) // 1000))


def encode_record(record: StoredSession, bucket: Bucket, seen_us: int = 0) -> bytes:
    """Header + data, the one value a session is stored as (counted in ``bucket``); a
    bound record (format 4) also carries ``seen_us`` and its owner (see :mod:`.scripts`)."""
    if record.created_us < 0 or record.expires_us < 0 or record.version < 0:
        raise ValueError("times before 1970 and negative versions cannot be stored")
    owner = record.owner
    header = _HEADER.pack(
        _FORMAT if owner is None else OWNED_FORMAT,
        record.version,
        record.created_us,
        record.expires_us,
        bucket.level,
        bucket.end,
    )
    if owner is None:
        return header + record.data
    return header + _SEEN.pack(seen_us) + users.encode_owner_block(owner) + record.data


def decode_record(raw: bytes) -> StoredSession | None:
    """The record in a stored value, or None for a value that is not ours."""
    if len(raw) >= _HEADER.size and raw[0] == _FORMAT:
        _, version, created, expires, _level, _end = _HEADER.unpack_from(raw)
        return StoredSession(raw[_HEADER.size :], version, created, expires)
    head = users.decode_head(raw)  # a bound session: only now is the owner read
    if head is None:
        return None
    return head.record._replace(data=raw[head.data_at :])


class Marker(NamedTuple):
    """What a moved marker holds."""

    #: The key the session moved to.
    to: str
    expires_us: int
    #: The rename's ``now``: ``moved`` answers for REPLACED_ID_GRACE_US after it.
    renamed_us: int


def encode_marker(new_key: str, expires_us: int, renamed_us: int) -> bytes:
    """The moved marker a rename at ``renamed_us`` to ``new_key`` expiring at ``expires_us``
    leaves under the old key (the scripts build the same bytes)."""
    return _MARKER.pack(MARKER_FORMAT, expires_us, renamed_us, new_key.encode("ascii"))


def decode_marker(raw: bytes) -> Marker | None:
    """The moved marker in a stored value, or None for a value that is not one (a marker
    naming anything but a session key is not one of ours)."""
    if len(raw) == MARKER_SIZE and raw[0] == MARKER_FORMAT:
        _, expires, renamed, new_key = _MARKER.unpack(raw)
        key = new_key.decode("ascii", "replace")
        if _SESSION_KEY.fullmatch(key):
            return Marker(key, expires, renamed)
    return None


def stored_bucket(raw: bytes) -> Bucket:
    """The count bucket a stored value's header names (none for a value not ours)."""
    if len(raw) >= _HEADER.size and raw[0] in (_FORMAT, OWNED_FORMAT):
        return Bucket(*_HEADER.unpack_from(raw)[4:])
    return UNCOUNTED


def clock_arg(expires_us: int, now_us: int, bucket: Bucket) -> bytes:
    """The scripts' clock argument (see :mod:`.scripts`) for a record expiring at
    ``expires_us`` and counted in ``bucket``, judged at ``now_us``; its TTL field is
    :func:`ttl_millis`."""
    ttl = ttl_millis(expires_us, now_us)
    return _CLOCK.pack(now_us, ttl, expires_us, bucket.level, bucket.end)


# -- keys --------------------------------------------------------------------------------
def validate_key_prefix(prefix: str) -> str:
    """``prefix`` if it is safe to put in front of every key, else ConfigurationError."""
    if not prefix:
        raise ConfigurationError(
            "key_prefix must not be empty: it keeps apps sharing a Redis apart"
        )
    if len(prefix) > MAX_PREFIX_LENGTH:
        raise ConfigurationError(f"key_prefix is longer than {MAX_PREFIX_LENGTH} characters")
    if not all(33 <= ord(c) <= 126 for c in prefix):
        raise ConfigurationError("key_prefix must be printable ASCII without spaces")
    if _FORBIDDEN_IN_PREFIX & set(prefix):
        raise ConfigurationError("key_prefix must not contain any of * ? [ ] { } \\")
    return prefix


class KeyLayout:
    """Redis key names for one key prefix (see the module docstring)."""

    def __init__(self, prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self.prefix = validate_key_prefix(prefix)

    def _tag(self, key: str) -> str:
        if not _SESSION_KEY.fullmatch(key):
            # The manager always passes SHA-256 hex; anything else is a caller bug, and
            # would otherwise put arbitrary text into key names.
            raise ValueError("session keys must be 64 lowercase hex characters")
        return f"{self.prefix}{{{key[:2]}}}:"

    def session(self, key: str) -> str:
        return self._tag(key) + key

    def session_and_index(self, key: str) -> tuple[str, str]:
        """The two keys most scripts take: :meth:`session` and :meth:`index_of`."""
        tag = self._tag(key)
        return tag + key, tag + "index"

    def index_of(self, key: str) -> str:
        return self._tag(key) + "index"

    def parking(self, key: str) -> str:
        return self._tag(key) + "moving:" + key

    def same_slot(self, key: str, other: str) -> bool:
        return key[:2] == other[:2]

    def user(self, user_id: str) -> str:
        """The index of a user's sessions (see :mod:`.users`)."""
        return f"{self.prefix}user:{users.user_index_id(user_id)}"

    def all_indexes(self) -> tuple[str, ...]:
        return tuple(f"{self.prefix}{{{shard:02x}}}:index" for shard in range(SHARDS))


# -- commands (each one round trip) -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Get:
    """GET one key; answered with its bytes or None."""

    key: str


@dataclass(frozen=True, slots=True)
class Eval:
    """Run a script (EVALSHA, EVAL if the server lacks it); answered with its reply.
    Every script writes (reads are :class:`Get`), so a configured WAIT follows each."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SetIfEqual:
    """``SET key value IFEQ old PX ttl_ms``: replace the value, and set its TTL, only if the
    whole stored value is ``old`` (Valkey 8.1 and later); answered with true when set, None
    when not. A write: a configured WAIT follows it too."""

    key: str
    value: bytes
    old: bytes
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class CountLive:
    """ZCOUNT each index for scores above ``above``; answered with the sum."""

    keys: tuple[str, ...]
    above: int


@dataclass(frozen=True, slots=True)
class TrimIndexes:
    """ZREMRANGEBYSCORE each index up to ``upto``; answered with nothing useful."""

    keys: tuple[str, ...]
    upto: int


@dataclass(frozen=True, slots=True)
class HashEntries:
    """HGETALL one hash; answered with its ``(field, value)`` pairs, as bytes."""

    key: str


@dataclass(frozen=True, slots=True)
class Heads:
    """GETRANGE 0 ``size - 1`` of each key (pipelined; on Cluster, per master); answered
    with a list of bytes (empty for a missing key)."""

    keys: tuple[str, ...]
    size: int


Command = Get | Eval | SetIfEqual | CountLive | TrimIndexes | HashEntries | Heads


def _rewritten(
    old: bytes, version: int, expires_us: int, bucket: Bucket, now_us: int, data: bytes
) -> bytes:
    """The value an update of ``old`` writes: as the UPDATE script builds it (a bound
    value keeps its owner block and gets ``seen`` = ``now_us``)."""
    created = _HEADER.unpack_from(old)[2]
    header = _HEADER.pack(old[0], version, created, expires_us, bucket.level, bucket.end)
    if old[0] != OWNED_FORMAT:
        return header + data
    head = users.decode_head(old)
    if head is None:  # pragma: no cover (only values read back from the store are held)
        raise ValueError("a bound value that does not decode")
    return header + _SEEN.pack(now_us) + old[_HEADER.size + 8 : head.data_at] + data


def _expecting(data: bytes | None, expected_version: int | None) -> bytes:
    """What follows a rename's clock argument: the expected version (8 bytes) when the
    rename moves new ``data`` (the scripts then replace the data and check the version),
    else nothing."""
    if data is None:
        return b""
    if expected_version is None:
        raise ValueError("a rename with data needs the version the data was made from")
    return _SEEN.pack(expected_version)


# -- the class the twins share ---------------------------------------------------------------
class RedisRepositoryBase:
    """A client, the key layout and the options, and every operation's command; the twins
    add ``_execute``, the one method that talks to Redis.

    ``client`` is a redis-py client (plain, a Sentinel ``master_for`` client, or Cluster).
    ``owned``: what the repository created and closes in ``close()`` (never a client the
    app handed in). ``wait_replicas``: after each write, WAIT for that many replicas (not on
    Cluster), up to ``wait_timeout_ms``. ``where`` names the store in error messages, which
    never show ``secrets``. ``set_if_equal``: update with ``SET ... IFEQ`` where the server
    has it (see :meth:`update_flow`); False keeps every update on the script.
    """

    native_ttl = True
    #: The largest IFEQ (old and new value together, bytes) an update sends; larger ones run
    #: the script. IFEQ sends the old value back: past about 6 KB redis-py no longer packs a
    #: command into one buffer, and measured IFEQ round trips then lose to the script's
    #: (see docs/stores/redis.md, Valkey).
    set_if_equal_max_bytes = 5 * 1024

    def __init__(
        self,
        client: Any,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        wait_replicas: int = 0,
        wait_timeout_ms: int = DEFAULT_WAIT_TIMEOUT_MS,
        count_resolution: int = DEFAULT_RESOLUTION,
        owned: Sequence[Any] = (),
        where: str | None = None,
        secrets: tuple[str, ...] = (),
        set_if_equal: bool = True,
    ) -> None:
        # Typed Any: redis-py's annotations overload every command on sync/async clients.
        self.client = client
        #: Keys of different shards live in different slots (see :meth:`rename_flow`).
        self.cluster = is_cluster_client(client)
        self.layout = KeyLayout(key_prefix)
        self.resolution = checked_resolution(count_resolution)
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._owned = list(owned)
        self._where = where or describe_client(client)
        self._secrets = secrets
        #: Whether the server has ``SET ... IFEQ``: None until the first update tries it,
        #: False from the first "syntax error" on (a server that lacks it).
        self.set_if_equal: bool | None = None if set_if_equal else False
        #: The values this repository last read or wrote: what IFEQ compares with. Only a
        #: few until the server has shown it has IFEQ (a server without it, Redis 7, is
        #: found out by the first update that tries, and then none are kept).
        self.recent = RecentValues(max_entries=UNPROVEN_ENTRIES)

    @property
    def key_prefix(self) -> str:
        return self.layout.prefix

    @property
    def store_kind(self) -> str:
        return "redis+cluster" if self.cluster else "redis"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._where} prefix={self.key_prefix!r}>"

    def _wrap(self, exc: Exception, operation: str) -> StoreError:
        return wrap_redis_error(exc, operation=operation, where=self._where, secrets=self._secrets)

    # -- commands and replies --------------------------------------------------------------
    def wrong_type(self, error: StoreError, key: str, *, log: bool = True) -> bool:
        """Whether ``error`` (from a read) says another Redis type (a list, a hash, written
        by something else under our prefix) holds the session key: that is no session, as
        a string in an unknown format is none (logged here, unless ``log`` is false)."""
        cause = error.__cause__
        if cause is None or not str(cause).startswith("WRONGTYPE"):
            return False
        if log:
            logger.warning("ignoring a value of another Redis type under session key %s…", key[:8])
        return True

    def record_from(self, raw: Any, key: str, now_us: int) -> StoredSession | None:
        """The live record in the reply to ``Get(layout.session(key))``."""
        if raw is None:
            return None
        value = bytes(raw)
        record = decode_record(value)
        if record is None:
            # A moved marker is an ordinary miss: the session was renamed away.
            if decode_marker(value) is None:
                logger.warning(
                    "ignoring a value in an unknown format under session key %s…", key[:8]
                )
            return None
        if record.expires_us <= now_us:
            return None
        self.remember(key, value)
        return record

    def marker_from(self, raw: Any, now_us: int) -> bool:
        """Whether the reply to ``Get(layout.session(key))`` is an unexpired moved marker
        left at most REPLACED_ID_GRACE_US before ``now_us`` (the contract's ``moved``)."""
        marker = decode_marker(bytes(raw)) if raw is not None else None
        return marker is not None and marker_answers(marker.expires_us, marker.renamed_us, now_us)

    def _clock(self, expires_us: int, now_us: int) -> bytes:
        """The clock argument of a write setting ``expires_us``, with the count bucket that
        expiry falls in (the scripts re-file a session only when it differs from the bucket
        the stored header names)."""
        return clock_arg(expires_us, now_us, place(expires_us, now_us, self.resolution))

    def create_script(
        self,
        key: str,
        record: StoredSession,
        now_us: int,
        owner_until_us: int | None = None,
        *,
        with_user: bool = False,
    ) -> Eval:
        """Reply: true when stored. ``with_user``: a bound record joins its user's index in
        the same script (plain Redis and Sentinel)."""
        bucket = place(record.expires_us, now_us, self.resolution)
        clock = clock_arg(record.expires_us, now_us, bucket)
        value = encode_record(record, bucket, now_us)
        keys = self.layout.session_and_index(key)
        owner = record.owner
        if owner is None or not with_user:
            return Eval(scripts.CREATE, keys, (clock, value))
        entry = users.index_entry(owner.handle, now_us)
        until = users.ttl_arg(owner_until_us, now_us)
        return Eval(
            scripts.CREATE, (*keys, self.layout.user(owner.user_id)), (clock, value, entry, until)
        )

    def create_flow(
        self, key: str, record: StoredSession, now_us: int, owner_until_us: int | None
    ) -> Flow[Command, bool]:
        """One script; on Cluster a bound record's key is filed in its user's index first
        (:meth:`user_add`), so the index never misses a live session."""
        if record.owner is not None and self.cluster:
            yield self.user_add(record.owner, key, now_us, users.ttl_arg(owner_until_us, now_us))
        command = self.create_script(
            key, record, now_us, owner_until_us, with_user=not self.cluster
        )
        return self.created(key, command, (yield command))

    def user_add(self, owner: Owner, key: str, now_us: int, ttl: bytes) -> Eval:
        """File ``key`` in ``owner``'s index (Cluster: before the key is written)."""
        entry = users.index_entry(owner.handle, now_us)
        return Eval(
            scripts.USER_ADD, (self.layout.user(owner.user_id),), (key.encode(), entry, ttl)
        )

    def update_flow(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> Flow[Command, int | None]:
        """Compare-and-set ``key``'s record on ``expected_version``: the new version, or None.

        Where the server has ``SET ... IFEQ`` and this repository holds the value it last
        read or wrote under ``key``, one SET replaces that exact value (its header holds the
        version, so a value equal to it is the record at ``expected_version``, live by
        ``now_us``, checked here), sets the TTL in the same command, and needs no change to
        the count index (only taken when the new expiry stays in the stored bucket). The
        UPDATE script runs instead when IFEQ cannot decide: no value held, another bucket,
        or IFEQ did not set (another write came in, or a touch rewrote the header's expiry:
        the script then judges by the version alone, as it always does). Either way the
        record ends byte for byte the same, and a lost race is reported only by the script.
        """
        bucket = place(expires_us, now_us, self.resolution)
        old = self._held(key, expected_version, now_us)
        new = b""  # the value the write stores, when the held one tells its creation time
        if old is not None:
            new = _rewritten(old, expected_version + 1, expires_us, bucket, now_us, data)
            if (yield from self._replace(key, old, new, ttl_millis(expires_us, now_us))):
                return expected_version + 1
        versions = _VERSIONS.pack(expected_version, expected_version + 1)
        arg = clock_arg(expires_us, now_us, bucket) + versions
        stored = yield Eval(scripts.UPDATE, self.layout.session_and_index(key), (arg, data))
        if not stored:
            return None
        self.remember(key, new)
        return expected_version + 1

    def _replace(self, key: str, old: bytes, new: bytes, ttl_ms: int) -> Flow[Command, bool]:
        """``SET key new IFEQ old PX ttl_ms`` if it may stand for the script (the bucket
        ``new`` names is the stored one, and the command is small enough to be worth it):
        whether it set."""
        if stored_bucket(old) != stored_bucket(new):
            return False  # the count index must follow: only the script does that
        if len(old) + len(new) > self.set_if_equal_max_bytes:
            return False
        try:
            if not (yield SetIfEqual(self.layout.session(key), new, old, ttl_ms)):
                return False
        except StoreError as error:
            if isinstance(error, StoreUnavailableError):
                raise
            # The server refused the command itself (no IFEQ: "syntax error"), or the key
            # holds another type: the script answers, or raises, as it would.
            if "syntax error" in str(error.__cause__).lower():
                self._without_set_if_equal()
            return False
        self._has_set_if_equal()
        self.recent.put(key, new)
        return True

    def _held(self, key: str, expected_version: int, now_us: int) -> bytes | None:
        """The value held for ``key`` if it is the record at ``expected_version``, live by
        ``now_us`` (the only one an IFEQ may replace), else None."""
        if self.set_if_equal is False:
            return None
        old = self.recent.get(key)
        if old is None:
            return None
        _, version, _created, expires, _level, _end = _HEADER.unpack_from(old)
        return old if version == expected_version and expires > now_us else None

    def remember(self, key: str, value: bytes) -> None:
        """Hold ``value``, just read or written under ``key``, for a later IFEQ (not when
        the server lacks IFEQ, nor a value too large to send back)."""
        if value and self.set_if_equal is not False and len(value) < self.set_if_equal_max_bytes:
            self.recent.put(key, value)

    def created(self, key: str, command: Eval, reply: Any) -> bool:
        """Whether the reply to ``create_script(key, ...)`` says it stored the record (then
        held for the next update's IFEQ)."""
        if not reply:
            return False
        self.remember(key, command.args[1])
        return True

    def _has_set_if_equal(self) -> None:
        if self.set_if_equal is None:
            self.set_if_equal = True
            self.recent.max_entries = DEFAULT_MAX_ENTRIES

    def _without_set_if_equal(self) -> None:
        if self.set_if_equal is not False:
            logger.info("%s has no SET ... IFEQ: updates run the script", self._where)
        self.set_if_equal = False
        self.recent.clear()

    def touch_script(self, key: str, expires_us: int, now_us: int) -> Eval:
        """Reply: true when a live record was there."""
        clock = self._clock(expires_us, now_us)
        return Eval(scripts.TOUCH, self.layout.session_and_index(key), (clock,))

    def delete_script(self, key: str) -> Eval:
        """Reply: the key the deleted moved marker named, or None."""
        keys = (*self.layout.session_and_index(key), self.layout.parking(key))
        return Eval(scripts.DELETE, keys, (b"c" if self.cluster else b"s",))

    def delete_flow(self, key: str) -> Flow[Command, None]:
        """DELETE ``key``; if it held a moved marker, DELETE the key it names, and so on
        down the chain, so that a destroy also removes where a racing regenerate moved the
        session. One script per hop: in Cluster mode each hop may be in another slot.

        A rename that moves the session on while this runs leaves a marker on the key
        still to be deleted, which this follows in turn; one that has not yet moved it
        finds nothing to move once its key is deleted."""
        seen = {key}
        while True:
            named = yield self.delete_script(key)
            if named is None:
                return
            key = bytes(named).decode("ascii", "replace")
            if key in seen or not _SESSION_KEY.fullmatch(key):
                return  # never written by ormsession: nothing more to follow
            seen.add(key)

    def rename_flow(
        self,
        old_key: str,
        new_key: str,
        expires_us: int,
        now_us: int,
        owner: Owner | None = None,
        owner_until_us: int | None = None,
        data: bytes | None = None,
        expected_version: int | None = None,
    ) -> Flow[Command, bool]:
        """One atomic script on plain Redis and Sentinel (the user indexes included), and
        in Cluster mode for an unbound session when both keys share a shard (1 in 256).
        Otherwise the keys live in different slots, maybe on different masters (and a
        bound session's user index in yet another), and no Redis command spans them: see
        :meth:`_move_across_slots`. With ``data``, the version check is in the script that
        decides the move (RENAME, or PARK across slots) and the moved record holds
        ``data``."""
        clock = self._clock(expires_us, now_us) + _expecting(data, expected_version)
        new_data = data if data is not None else b""
        keys = (*self.layout.session_and_index(old_key), *self.layout.session_and_index(new_key))
        if not self.cluster:
            if owner is None:
                return bool((yield Eval(scripts.RENAME, keys, (clock, b"s", new_data))))
            args = (
                clock,
                b"s",
                new_data,
                users.encode_owner_block(owner),
                users.index_entry(owner.handle, now_us),
                users.ttl_arg(owner_until_us, now_us),
            )
            binding = (*keys, self.layout.user(owner.user_id))
            return bool((yield Eval(scripts.RENAME, binding, args)))
        if owner is None and self.layout.same_slot(old_key, new_key):
            moved = yield Eval(scripts.RENAME, keys, (clock, b"c", new_data))
            if moved != 2:  # 2: a bound session, whose index is in another slot
                return bool(moved)
        return (
            yield from self._move_across_slots(
                old_key, new_key, expires_us, now_us, owner, owner_until_us, data, expected_version
            )
        )

    def _move_across_slots(
        self,
        old_key: str,
        new_key: str,
        expires_us: int,
        now_us: int,
        owner: Owner | None = None,
        owner_until_us: int | None = None,
        data: bytes | None = None,
        expected_version: int | None = None,
    ) -> Flow[Command, bool]:
        """Park, copy, discard: a rename between slots that never shows two live copies and
        loses to a destroy at every step.

        1. PARK moves the old record to a parking key in its own slot, leaves the moved
           marker under the old key (from here on, the old id finds nothing and a second
           rename of it fails) and returns the record. With ``data`` it decides the rename:
           it parks only a record at ``expected_version`` (else nothing changes and the
           rename returns False), and returns only its head. An update or touch of the old
           key after it finds the marker and fails (the caller reads again and finds the
           session moved), so no write can land on the old bytes between the check and
           the copy, and none is lost unreported.
        1b. For a bound record (or a login: ``owner``), USER_ADD files the new key in the
           user's index before step 2 makes it live (so a revoke_all that reads the index
           from then on finds the new key; one that read it before finds the old key, whose
           marker it follows). A plain rename keeps the index at least as long as the
           session (``expires_us``); a login as ``owner_until_us`` says. The old key's
           entry stays: its marker leads to the new key while the move is in flight, and
           the next listing or revoke drops it once the marker is gone.
        2. CREATE writes it, with the new expiry (and owner), under the new key; with
           ``data``, holding ``data``: the parked old bytes are never copied, so the
           copy cannot bring stale bytes back, and they leave the store with step 3.
        3. DISCARD drops the parked copy, and tells whether the marker still stands. A
           DELETE of the old key in between removed marker and parked copy together, and
           deleted what the marker named (maybe before step 2 wrote it): the rename lost
           to a destroy, so the new key is deleted and the rename returns False.

        If a step fails, the new key is deleted and the record unparked in place of the
        marker (the rename did not happen; the error is raised): with ``data``, the old
        bytes come back under the old key at their version, never the new ones. If that
        roll-back fails too, the record stays parked, invisible, until its TTL (at most
        :data:`PARK_TTL_MS`): the session is lost, never duplicated.
        """
        marker = encode_marker(new_key, expires_us, now_us)  # as PARK builds it
        try:
            expecting = expected_version if data is not None else None
            park = self.park_script(old_key, new_key, expires_us, now_us, expecting)
            raw = yield park
            record = decode_record(bytes(raw)) if raw is not None else None
            if record is None:
                return False
            if data is not None:
                record = record._replace(data=data)
            bound = owner or record.owner
            if bound is not None:
                until = owner_until_us if owner is not None else expires_us
                ttl = users.ttl_arg(until, now_us)
                yield self.user_add(bound, new_key, now_us, ttl)
            moving = record._replace(expires_us=expires_us, owner=bound)
            create = self.create_script(new_key, moving, now_us)
            stored = yield create
            if not stored:
                # A retried CREATE whose first run stored it finds its own value there.
                stored = (yield Get(self.layout.session(new_key))) == create.args[1]
        except StoreError as error:
            yield from self._unpark(old_key, new_key, marker, now_us, error, delete_new=True)
            raise
        if not stored:
            # The caller guarantees a fresh new key; if it is not, leave that session be.
            taken = StoreError("rename: the new key already holds a live session")
            yield from self._unpark(old_key, new_key, marker, now_us, taken, delete_new=False)
            raise taken
        layout = self.layout
        try:
            kept = yield Eval(
                scripts.DISCARD, (layout.parking(old_key), layout.session(old_key)), (marker,)
            )
        except StoreError as error:
            # Whether a destroy came in between is unknown: undo rather than risk a copy
            # of a destroyed session under the new key.
            yield from self._unpark(old_key, new_key, marker, now_us, error, delete_new=True)
            raise
        if not kept:
            yield from self.delete_flow(new_key)
            return False
        return True

    def park_script(
        self,
        old_key: str,
        new_key: str,
        expires_us: int,
        now_us: int,
        expected_version: int | None = None,
    ) -> Eval:
        """Step 1 of :meth:`_move_across_slots` (repeatable: its reply may be lost); with
        ``expected_version``, only a record at that version is parked, and only its head
        returned."""
        layout = self.layout
        keys = (*layout.session_and_index(old_key), layout.parking(old_key))
        clock = clock_arg(expires_us, now_us, UNCOUNTED)
        if expected_version is not None:
            clock += _SEEN.pack(expected_version)
        return Eval(scripts.PARK, keys, (clock, new_key.encode("ascii")))

    def _unpark(
        self,
        old_key: str,
        new_key: str,
        marker: bytes,
        now_us: int,
        cause: StoreError,
        *,
        delete_new: bool,
    ) -> Flow[Command, None]:
        """Undo a half-done move: drop what step 2 may have written (its reply may have
        been lost), then put the parked record back under the old key, in place of the
        marker."""
        layout = self.layout
        try:
            if delete_new:
                yield from self.delete_flow(new_key)
            raw = yield Get(layout.parking(old_key))
            value = bytes(raw) if raw is not None else b""
            record = decode_record(value)
            if record is None:
                return  # nothing parked: not parked yet, or a destroy removed it
            # Filed again where its header says it is counted.
            clock = clock_arg(record.expires_us, now_us, stored_bucket(value))
            keys = (layout.parking(old_key), *layout.session_and_index(old_key))
            yield Eval(scripts.UNPARK, keys, (clock, marker))
        except StoreError as error:
            logger.error(
                "rename of session %s… failed (%s) and could not be rolled back (%s): the "
                "session is lost",
                old_key[:8],
                cause,
                error,
            )

    # -- the user index (see .users) ------------------------------------------------------
    def sessions_of_flow(self, user_id: str, now_us: int) -> Flow[Command, list[OwnedSession]]:
        """One script (USER_LIST) on plain Redis and Sentinel. On Cluster: HGETALL of the
        index, the heads of the sessions it names (one pipeline), and, if some entries name
        nothing any more, one script dropping them."""
        index = self.layout.user(user_id)
        clock = clock_arg(now_us, now_us, UNCOUNTED)
        if not self.cluster:
            reply = yield Eval(scripts.USER_LIST, (index,), (clock,))
            return self._listed(users.pairs(reply), user_id, now_us)
        entries = [(key, entry) for key, entry in (yield HashEntries(index))]
        named = [(key, entry) for key, entry in entries if _SESSION_KEY.fullmatch(key)]
        forget = [key for key, _ in entries if not _SESSION_KEY.fullmatch(key)]
        heads: list[bytes] = []
        if named:
            keys = tuple(self.layout.session(key) for key, _ in named)
            heads = [bytes(raw or b"") for raw in (yield Heads(keys, users.HEAD_BYTES))]
        found = []
        for (key, entry), raw in zip(named, heads, strict=True):
            head = users.decode_head(raw)
            if head is not None and head.owner.user_id == user_id:
                if head.record.expires_us > now_us:
                    found.append((key, raw))
                    continue
            elif decode_marker(raw) is not None:
                continue  # the old key of a move: its entry goes once the marker does
            elif not raw and users.entry_time(entry) + users.ENTRY_GRACE_US > now_us:
                continue  # maybe a create or move in flight, about to write its key
            forget.append(key)
        if forget:
            yield self._forget(index, forget)
        return self._listed(found, user_id, now_us)

    def _listed(
        self, found: Iterable[tuple[str, bytes]], user_id: str, now_us: int
    ) -> list[OwnedSession]:
        listed = []
        for key, raw in found:
            head = users.decode_head(raw)
            live = head is not None and head.record.expires_us > now_us
            if live and head is not None and head.owner.user_id == user_id:
                listed.append(users.owned_session(key, head))
        return listed

    def _forget(self, index: str, keys: Sequence[str]) -> Eval:
        return Eval(scripts.USER_FORGET, (index,), tuple(key.encode() for key in keys))

    def revoke_flow(
        self, user_id: str, handle: str, keep_key: str | None, now_us: int
    ) -> Flow[Command, int]:
        """End the user's sessions with ``handle`` ('' for all) but ``keep_key``; how many.

        One script (USER_REVOKE) on plain Redis and Sentinel. On Cluster: HGETALL of the
        index, then one REVOKE_HOP per key reached (an entry's key, and the keys its moved
        markers lead to, each once), then one script dropping the entries gone through. Every live
        session of the user is in the index, or is reached through a marker of a key that
        is (see :mod:`.users`), so none is missed; a session seen twice (through its old
        key and its new one while it moves) is counted once, by its handle."""
        index = self.layout.user(user_id)
        clock = clock_arg(now_us, now_us, UNCOUNTED)
        keep = keep_key or ""
        if not self.cluster:
            args = (clock, handle.encode("ascii"), keep.encode("ascii"))
            return int((yield Eval(scripts.USER_REVOKE, (index,), args)))
        return (yield from self._revoke_across_slots(index, user_id, handle, keep, now_us))

    def _revoke_across_slots(
        self, index: str, user_id: str, handle: str, keep: str, now_us: int
    ) -> Flow[Command, int]:
        """revoke_flow on Cluster: each key reached is hopped once, however many entries
        lead to it (an old key's marker and the new key's own entry, say)."""
        args = (
            clock_arg(now_us, now_us, UNCOUNTED),
            users.user_index_id(user_id).encode("ascii"),
            handle.encode("ascii"),
        )
        state_of: dict[str, bytes] = {}  # what each key's hop found
        reaches_end: set[str] = set()  # keys whose chain ended a session
        ended: set[bytes] = set()  # the handles of the sessions ended
        forget = []
        for key, entry in (yield HashEntries(index)):
            if not _SESSION_KEY.fullmatch(key):
                forget.append(key)
                continue
            if key == keep or (handle and users.entry_handle(entry) != handle):
                continue
            chain, at = [], key
            while at and at != keep and at not in state_of and _SESSION_KEY.fullmatch(at):
                layout = self.layout
                keys = (*layout.session_and_index(at), layout.parking(at))
                reply = yield Eval(scripts.REVOKE_HOP, keys, args)
                gone, to, state = (bytes(part) for part in reply)
                state_of[at] = state
                chain.append(at)
                if gone:
                    ended.add(gone)
                    reaches_end.update(chain)
                at = to.decode("ascii", "replace")
            if at in reaches_end:  # joined a chain that ended a session
                reaches_end.update(chain)
            first = state_of.get(key, b"")
            stale = first == b"other" or (
                first == b"none" and users.entry_time(entry) + users.ENTRY_GRACE_US <= now_us
            )
            if key in reaches_end or stale:
                forget.append(key)
        if forget:
            yield self._forget(index, forget)
        return len(ended)


def check_acknowledged(acknowledged: int, wanted: int, timeout_ms: int) -> None:
    """After a write with ``wait_replicas``: fewer acknowledgements than asked are logged,
    not raised. The write is on the master and every reader sees it; raising would report
    a failure for a write that happened (and, after a rename, leave the client holding an
    id that no longer exists)."""
    if acknowledged < wanted:
        logger.warning(
            "session write acknowledged by %d of %d replicas within %d ms; it could be lost "
            "if the master fails now",
            acknowledged,
            wanted,
            timeout_ms,
        )
