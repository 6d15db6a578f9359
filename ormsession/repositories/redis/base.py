"""What the sync and async Redis repositories share, with no I/O: key layout, record
encoding and every contract operation as a flow of store commands.

Each operation is a generator that *yields* the commands it needs (:class:`Get`,
:class:`Eval`, :class:`CountLive`, :class:`TrimIndexes`) and receives their results; the
sync repository answers them by calling redis-py, the async one by awaiting it (the pattern
of :mod:`ormsession.policy`). A failed command is thrown into the flow as a
:class:`~ormsession.errors.StoreError`, so roll-backs are written here once too.

Key layout (``P`` is the key prefix, ``h`` the 64-hex key the manager hands in)::

    P{h[:2]}:h           one session: header + data, with a native TTL
    P{h[:2]}:index       count index of shard h[:2]: member h, score its count bucket's end (µs)
    P{h[:2]}:moving:h    a session parked while it moves between Cluster slots

The braces are a Redis Cluster hash tag: a session, its index shard and its parking key
share one slot, so every script touches a single slot. The 256 tags spread sessions over
all masters, and ``count`` sums 256 ZCOUNTs. The same layout is used on plain Redis and
Sentinel, so data can move between the three unchanged.
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from ormsession.errors import ConfigurationError, StoreError
from ormsession.repositories.base import StoredSession
from ormsession.repositories.buckets import DEFAULT_RESOLUTION, UNCOUNTED, Bucket, place
from ormsession.repositories.redis import scripts
from ormsession.repositories.redis.scripts import Script

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_WAIT_TIMEOUT_MS",
    "HEADER_SIZE",
    "MAX_PREFIX_LENGTH",
    "SHARDS",
    "Command",
    "CountLive",
    "Eval",
    "Flow",
    "Get",
    "KeyLayout",
    "RedisStoreCore",
    "TrimIndexes",
    "check_acknowledged",
    "decode_record",
    "encode_record",
    "stored_bucket",
    "throw_into",
    "ttl_millis",
    "validate_key_prefix",
]

logger = logging.getLogger("ormsession.redis")

T = TypeVar("T")

DEFAULT_KEY_PREFIX = "ormsession:"
DEFAULT_WAIT_TIMEOUT_MS = 1000
MAX_PREFIX_LENGTH = 128
#: Index shards = hash tags: two hex digits of the key. Part of the key layout: changing it
#: would move every session to another key.
SHARDS = 256
#: How long a parked record (a Cluster rename in flight) may outlive a crash of its mover.
PARK_TTL_MS = 60_000

# Format marker, version, created µs, expires µs, count bucket level and end (s); see
# scripts.py.
_HEADER = struct.Struct(">BQQQBQ")
#: The bytes before the data in a stored value.
HEADER_SIZE = _HEADER.size
_FORMAT = 2
# The scripts' clock argument (now µs, TTL ms, expires µs, bucket level, bucket end s);
# UPDATE's adds the expected and the new version.
_CLOCK = struct.Struct(">QQQBQ")
_CLOCK_AND_VERSIONS = struct.Struct(">QQQBQQQ")
_SESSION_KEY = re.compile(r"[0-9a-f]{64}")
# Glob characters would make SCAN patterns (ours and operators') match other apps' keys;
# braces would change the Cluster hash tag; backslash escapes globs.
_FORBIDDEN_IN_PREFIX = set("*?[]{}\\")


# -- values (times in µs, as the header keeps them) ------------------------------------------
def ttl_millis(expires_us: int, now_us: int) -> int:
    """The native TTL for a record expiring at ``expires_us``, judged at ``now_us``: rounded
    up (Redis never drops a record before the manager considers it expired), at least 1 ms
    (Redis rejects 0)."""
    return max(1, -(-(expires_us - now_us) // 1000))


def encode_record(record: StoredSession, bucket: Bucket) -> bytes:
    """Header + data, the one value a session is stored as (counted in ``bucket``)."""
    if record.created_us < 0 or record.expires_us < 0 or record.version < 0:
        raise ValueError("times before 1970 and negative versions cannot be stored")
    header = _HEADER.pack(
        _FORMAT, record.version, record.created_us, record.expires_us, bucket.level, bucket.end
    )
    return header + record.data


def decode_record(raw: bytes) -> StoredSession | None:
    """The record in a stored value, or None for a value that is not ours."""
    if len(raw) >= _HEADER.size and raw[0] == _FORMAT:
        _, version, created, expires, _level, _end = _HEADER.unpack_from(raw)
        return StoredSession(raw[_HEADER.size :], version, created, expires)
    return None


def stored_bucket(raw: bytes) -> Bucket:
    """The count bucket a stored value's header names (none for a value not ours)."""
    if len(raw) >= _HEADER.size and raw[0] == _FORMAT:
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
        """:meth:`session` and :meth:`index_of` with one check of ``key``."""
        tag = self._tag(key)
        return tag + key, tag + "index"

    def index_of(self, key: str) -> str:
        return self._tag(key) + "index"

    def parking(self, key: str) -> str:
        return self._tag(key) + "moving:" + key

    def same_slot(self, key: str, other: str) -> bool:
        return key[:2] == other[:2]

    def all_indexes(self) -> tuple[str, ...]:
        return tuple(f"{self.prefix}{{{shard:02x}}}:index" for shard in range(SHARDS))


# -- commands the flows yield ----------------------------------------------------------------
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
    args: tuple[bytes | int | str, ...]


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


Command = Get | Eval | CountLive | TrimIndexes
Flow = Generator[Command, Any, T]


# -- the operations ----------------------------------------------------------------------
class RedisStoreCore:
    """The repository contract as flows over one key layout. ``cluster``: keys of
    different shards live in different slots, so a rename between them cannot be one
    script (see :meth:`rename`)."""

    def __init__(
        self, layout: KeyLayout, *, cluster: bool, resolution: int = DEFAULT_RESOLUTION
    ) -> None:
        self.layout = layout
        self.cluster = cluster
        self.resolution = resolution

    def bucket_for(self, expires_us: int, now_us: int) -> Bucket:
        """The count bucket a record written at ``now_us`` and expiring at ``expires_us``
        falls in. (The scripts re-file a session only when this differs from the bucket
        its header names.)"""
        return place(expires_us, now_us, self.resolution)

    def read(self, key: str, now_us: int) -> Flow[StoredSession | None]:
        raw = yield Get(self.layout.session(key))
        return self.record_from(raw, key, now_us)

    def record_from(self, raw: Any, key: str, now_us: int) -> StoredSession | None:
        """The live record in a GET reply (also used by the twins' direct read path)."""
        if raw is None:
            return None
        record = decode_record(bytes(raw))
        if record is None:
            logger.warning("ignoring a value in an unknown format under session key %s…", key[:8])
            return None
        return record if record.expires_us > now_us else None

    def create(self, key: str, record: StoredSession, now_us: int) -> Flow[bool]:
        stored = yield self._create(key, record, now_us)
        return bool(stored)

    def _create(self, key: str, record: StoredSession, now_us: int) -> Eval:
        bucket = self.bucket_for(record.expires_us, now_us)
        clock, value = clock_arg(record.expires_us, now_us, bucket), encode_record(record, bucket)
        return Eval(scripts.CREATE, self.layout.session_and_index(key), (clock, value))

    def update_script(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> Eval:
        """The one script an update is (a write on every changed request: the twins run it
        directly, without a flow). Its reply is true when the version matched."""
        ttl = ttl_millis(expires_us, now_us)
        level, end = self.bucket_for(expires_us, now_us)
        versions = (expected_version, expected_version + 1)
        arg = _CLOCK_AND_VERSIONS.pack(now_us, ttl, expires_us, level, end, *versions)
        return Eval(scripts.UPDATE, self.layout.session_and_index(key), (arg, data))

    def touch(self, key: str, expires_us: int, now_us: int) -> Flow[bool]:
        clock = clock_arg(expires_us, now_us, self.bucket_for(expires_us, now_us))
        keys, args = self.layout.session_and_index(key), (clock,)
        stored = yield Eval(scripts.TOUCH, keys, args)
        return bool(stored)

    def delete(self, key: str) -> Flow[None]:
        yield Eval(scripts.DELETE, self.layout.session_and_index(key), ())

    def rename(self, old_key: str, new_key: str, expires_us: int, now_us: int) -> Flow[bool]:
        """One atomic script on plain Redis and Sentinel, and in Cluster mode when both
        keys share a shard (1 in 256). Otherwise the keys live in different slots, maybe on
        different masters, and no Redis command spans them: see :meth:`_move_across_slots`.
        """
        if self.cluster and not self.layout.same_slot(old_key, new_key):
            return (yield from self._move_across_slots(old_key, new_key, expires_us, now_us))
        keys = (*self.layout.session_and_index(old_key), *self.layout.session_and_index(new_key))
        clock = clock_arg(expires_us, now_us, self.bucket_for(expires_us, now_us))
        moved = yield Eval(scripts.RENAME, keys, (clock,))
        return bool(moved)

    def _move_across_slots(
        self, old_key: str, new_key: str, expires_us: int, now_us: int
    ) -> Flow[bool]:
        """Park, copy, discard: a rename between slots that never shows two live copies.

        1. PARK moves the old record to a parking key in its own slot (reads of the old id
           find nothing from here on) and returns it.
        2. CREATE writes it, with the new expiry, under the new key.
        3. DISCARD drops the parked copy.

        If step 1 or 2 fails, the new key is deleted and the record unparked (the rename
        did not happen; the error is raised). If that roll-back fails too, the record stays
        parked, invisible, until its TTL (at most :data:`PARK_TTL_MS`): the session is lost,
        never duplicated. If step 3 fails, the rename did happen; the parked copy expires.
        """
        parked_key = self.layout.parking(old_key)
        try:
            raw = yield self.park_script(old_key, now_us)
            record = decode_record(bytes(raw)) if raw is not None else None
            if record is None:
                return False
            stored = yield self._create(new_key, record._replace(expires_us=expires_us), now_us)
        except StoreError as error:
            yield from self._unpark(old_key, new_key, now_us, error, delete_new=True)
            raise
        if not stored:
            # The caller guarantees a fresh new key; if it is not, leave that session be.
            taken = StoreError("rename: the new key already holds a live session")
            yield from self._unpark(old_key, new_key, now_us, taken, delete_new=False)
            raise taken
        try:
            yield Eval(scripts.DISCARD, (parked_key,), ())
        except StoreError as error:
            logger.warning(
                "session %s… moved, but its parked copy stays until it expires: %s",
                new_key[:8],
                error,
            )
        return True

    def park_script(self, old_key: str, now_us: int) -> Eval:
        """Step 1 of :meth:`_move_across_slots` (repeatable: its reply may be lost)."""
        layout = self.layout
        keys = (*layout.session_and_index(old_key), layout.parking(old_key))
        return Eval(scripts.PARK, keys, (_CLOCK.pack(now_us, PARK_TTL_MS, 0, 0, 0),))

    def _unpark(
        self, old_key: str, new_key: str, now_us: int, cause: StoreError, *, delete_new: bool
    ) -> Flow[None]:
        """Undo a half-done move: drop what step 2 may have written (its reply may have
        been lost), then put the parked record back under the old key."""
        layout = self.layout
        try:
            if delete_new:
                yield Eval(scripts.DELETE, layout.session_and_index(new_key), ())
            raw = yield Get(layout.parking(old_key))
            value = bytes(raw) if raw is not None else b""
            record = decode_record(value)
            if record is None:
                return
            # Filed again where its header says it is counted.
            clock = clock_arg(record.expires_us, now_us, stored_bucket(value))
            yield Eval(
                scripts.UNPARK,
                (layout.parking(old_key), *layout.session_and_index(old_key)),
                (clock,),
            )
        except StoreError as error:
            logger.error(
                "rename of session %s… failed (%s) and could not be rolled back (%s): the "
                "session is lost",
                old_key[:8],
                cause,
                error,
            )

    def count(self, now_us: int) -> Flow[int]:
        total = yield CountLive(self.layout.all_indexes(), now_us)
        return int(total)

    def delete_expired(self, now_us: int, limit: int) -> Flow[int]:
        """Redis expires the records itself (native TTL): nothing to delete. The count
        index is trimmed here as well as on every create."""
        yield TrimIndexes(self.layout.all_indexes(), now_us)
        return 0


# -- shared by the two runners -----------------------------------------------------------
def throw_into(flow: Flow[Any], error: StoreError, cause: Exception) -> Command:
    """Throw ``error`` (caused by the driver's ``cause``) into ``flow``; return the next
    command it yields (a roll-back), or let the error propagate out of it."""
    error.__cause__ = cause
    return flow.throw(error)


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
