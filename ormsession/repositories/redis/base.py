"""What the sync and async Redis repositories share, with no I/O: key layout, record
encoding, the command each operation sends and the reading of its reply.

A contract method builds its one command here (:class:`Get`, :class:`Eval`,
:class:`CountLive` or :class:`TrimIndexes`), runs it through its twin's one I/O method,
``_execute``, and reads the reply here. Every write is one Lua script (:mod:`.scripts`).
The one operation that takes several round trips, a rename between Cluster slots, is a flow
(:meth:`RedisRepositoryBase.rename_flow`) that the twins drive with
:func:`ormsession.flows.run` and :func:`~ormsession.flows.arun`: a failed command is thrown
into it as a :class:`~ormsession.errors.StoreError`, so its roll-back is written once.

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ormsession.errors import ConfigurationError, StoreError
from ormsession.flows import Flow
from ormsession.repositories.base import StoredSession
from ormsession.repositories.buckets import (
    DEFAULT_RESOLUTION,
    UNCOUNTED,
    Bucket,
    checked_resolution,
    place,
)
from ormsession.repositories.redis import scripts
from ormsession.repositories.redis.clients import describe_client, is_cluster_client
from ormsession.repositories.redis.errors import wrap_redis_error
from ormsession.repositories.redis.scripts import Script

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
    "KeyLayout",
    "RedisRepositoryBase",
    "TrimIndexes",
    "check_acknowledged",
    "clock_arg",
    "decode_record",
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
#: How long a parked record (a Cluster rename in flight) may outlive a crash of its mover.
PARK_TTL_MS = 60_000

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
        """The two keys most scripts take: :meth:`session` and :meth:`index_of`."""
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


# -- the class the twins share ---------------------------------------------------------------
class RedisRepositoryBase:
    """A client, the key layout and the options, and every operation's command; the twins
    add ``_execute``, the one method that talks to Redis.

    ``client`` is a redis-py client (plain, a Sentinel ``master_for`` client, or Cluster).
    ``owned``: what the repository created and closes in ``close()`` (never a client the
    app handed in). ``wait_replicas``: after each write, WAIT for that many replicas (not on
    Cluster), up to ``wait_timeout_ms``. ``where`` names the store in error messages, which
    never show ``secrets``.
    """

    native_ttl = True

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

    @property
    def key_prefix(self) -> str:
        return self.layout.prefix

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._where} prefix={self.key_prefix!r}>"

    def _wrap(self, exc: Exception, operation: str) -> StoreError:
        return wrap_redis_error(exc, operation=operation, where=self._where, secrets=self._secrets)

    # -- commands and replies --------------------------------------------------------------
    def wrong_type(self, error: StoreError, key: str) -> bool:
        """Whether ``error`` (from a read) says another Redis type (a list, a hash, written
        by something else under our prefix) holds the session key: that is no session, as
        a string in an unknown format is none (logged here)."""
        cause = error.__cause__
        if cause is None or not str(cause).startswith("WRONGTYPE"):
            return False
        logger.warning("ignoring a value of another Redis type under session key %s…", key[:8])
        return True

    def record_from(self, raw: Any, key: str, now_us: int) -> StoredSession | None:
        """The live record in the reply to ``Get(layout.session(key))``."""
        if raw is None:
            return None
        record = decode_record(bytes(raw))
        if record is None:
            logger.warning("ignoring a value in an unknown format under session key %s…", key[:8])
            return None
        return record if record.expires_us > now_us else None

    def _clock(self, expires_us: int, now_us: int) -> bytes:
        """The clock argument of a write setting ``expires_us``, with the count bucket that
        expiry falls in (the scripts re-file a session only when it differs from the bucket
        the stored header names)."""
        return clock_arg(expires_us, now_us, place(expires_us, now_us, self.resolution))

    def create_script(self, key: str, record: StoredSession, now_us: int) -> Eval:
        """Reply: true when stored."""
        bucket = place(record.expires_us, now_us, self.resolution)
        clock = clock_arg(record.expires_us, now_us, bucket)
        value = encode_record(record, bucket)
        return Eval(scripts.CREATE, self.layout.session_and_index(key), (clock, value))

    def update_script(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> Eval:
        """Reply: true when the version matched (and the record was replaced)."""
        versions = _VERSIONS.pack(expected_version, expected_version + 1)
        arg = self._clock(expires_us, now_us) + versions
        return Eval(scripts.UPDATE, self.layout.session_and_index(key), (arg, data))

    def touch_script(self, key: str, expires_us: int, now_us: int) -> Eval:
        """Reply: true when a live record was there."""
        clock = self._clock(expires_us, now_us)
        return Eval(scripts.TOUCH, self.layout.session_and_index(key), (clock,))

    def delete_script(self, key: str) -> Eval:
        return Eval(scripts.DELETE, self.layout.session_and_index(key), ())

    def rename_flow(
        self, old_key: str, new_key: str, expires_us: int, now_us: int
    ) -> Flow[Command, bool]:
        """One atomic script on plain Redis and Sentinel, and in Cluster mode when both
        keys share a shard (1 in 256). Otherwise the keys live in different slots, maybe on
        different masters, and no Redis command spans them: see :meth:`_move_across_slots`.
        """
        if self.cluster and not self.layout.same_slot(old_key, new_key):
            return (yield from self._move_across_slots(old_key, new_key, expires_us, now_us))
        keys = (*self.layout.session_and_index(old_key), *self.layout.session_and_index(new_key))
        moved = yield Eval(scripts.RENAME, keys, (self._clock(expires_us, now_us),))
        return bool(moved)

    def _move_across_slots(
        self, old_key: str, new_key: str, expires_us: int, now_us: int
    ) -> Flow[Command, bool]:
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
        try:
            raw = yield self.park_script(old_key, now_us)
            record = decode_record(bytes(raw)) if raw is not None else None
            if record is None:
                return False
            moved = record._replace(expires_us=expires_us)
            stored = yield self.create_script(new_key, moved, now_us)
        except StoreError as error:
            yield from self._unpark(old_key, new_key, now_us, error, delete_new=True)
            raise
        if not stored:
            # The caller guarantees a fresh new key; if it is not, leave that session be.
            taken = StoreError("rename: the new key already holds a live session")
            yield from self._unpark(old_key, new_key, now_us, taken, delete_new=False)
            raise taken
        try:
            yield Eval(scripts.DISCARD, (self.layout.parking(old_key),), ())
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
    ) -> Flow[Command, None]:
        """Undo a half-done move: drop what step 2 may have written (its reply may have
        been lost), then put the parked record back under the old key."""
        layout = self.layout
        try:
            if delete_new:
                yield self.delete_script(new_key)
            raw = yield Get(layout.parking(old_key))
            value = bytes(raw) if raw is not None else b""
            record = decode_record(value)
            if record is None:
                return
            # Filed again where its header says it is counted.
            clock = clock_arg(record.expires_us, now_us, stored_bucket(value))
            keys = (layout.parking(old_key), *layout.session_and_index(old_key))
            yield Eval(scripts.UNPARK, keys, (clock,))
        except StoreError as error:
            logger.error(
                "rename of session %s… failed (%s) and could not be rolled back (%s): the "
                "session is lost",
                old_key[:8],
                cause,
                error,
            )


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
