"""What the sync and async Couchbase repositories share, with no I/O: the key layout, the
record encoding, the KV operations their flows yield, and how each becomes an SDK call.

Record layout (one binary document per session, stored with ``RawBinaryTranscoder``)::

    offset  size  field
    0       4     magic b"orS2" (an ormsession session record)
    4       8     version, unsigned big-endian (the compare-and-set counter)
    12      8     created_at, signed big-endian microseconds since the Unix epoch (UTC)
    20      8     expires_at, same encoding
    28      1     count level: the session is counted in a bucket 2**level seconds wide
    29      8     count bucket end, signed big-endian Unix seconds (0: not counted)
    37      ...   data: the serialized session, byte for byte

A rename replaces the old document with a *moved marker* (same transcoder), 84 bytes::

    offset  size  field
    0       4     magic b"orM2" (an ormsession moved marker)
    4       8     expires_at of the rename, signed big-endian microseconds (UTC)
    12      8     renamed_at: the rename's ``now``, same encoding
    20      64    the key the session moved to (64 lowercase hex characters)

It holds no data and is counted nowhere; the flows read it as "no session" (without the
warning a foreign document gets), refuse to create over it until it expires, and follow
it when deleting (see :mod:`~.flows`). ``moved`` answers for it only until
:data:`~ormsession.repositories.base.REPLACED_ID_GRACE_US` after ``renamed_at``.

A session bound to a user (an :class:`~ormsession.repositories.base.Owner`) has another
magic and, between the header and the data, when it was last written and its owner::

    offset  size  field
    0       4     magic b"orU1" (an ormsession session record with an owner)
    4       33    version, created_at, expires_at, count level and bucket end, as above
    37      8     seen_at: the ``now`` of its last create, update, touch or rename (µs)
    45      2     length of the user id (UTF-8), then the user id
    ..      1     length of the handle, then the handle
    ..      2     length of the user agent (0xffff: none), then the user agent
    ..      1     length of the IP address (0xff: none), then the address
    ..      ...   data

An unbound record keeps the shorter ``orS2`` layout, so a session that never logs in is
read, written and sized as before. The user index lives in one JSON document per user
(see :mod:`~.index`).

Why binary and not JSON: session data is already bytes (JSON or msgpack from the
serializer); base64 inside a JSON document would cost a third more space and an encode and
decode per operation, and a fixed header decodes without parsing the data. The binary
common flag lets other SDKs and tools read the document as bytes. The cost: the web console
shows it as binary and N1QL cannot query it (the count counters make N1QL unnecessary).
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, NamedTuple, TypeVar

from couchbase.exceptions import (
    CasMismatchException,
    DocumentExistsException,
    DocumentNotFoundException,
    ValueFormatException,
)
from couchbase.options import (
    DecrementOptions,
    DeltaValue,
    GetOptions,
    IncrementOptions,
    RemoveOptions,
    SignedInt64,
)
from couchbase.transcoder import RawBinaryTranscoder, RawJSONTranscoder

from ormsession.errors import ConfigurationError
from ormsession.repositories.base import Owner, StoredSession
from ormsession.repositories.couchbase.counters import Bucket

__all__ = [
    "HEADER",
    "MAGIC",
    "MARKER",
    "MARKER_MAGIC",
    "OWNED_MAGIC",
    "Count",
    "Doc",
    "Flow",
    "Get",
    "GetMany",
    "Insert",
    "KeyLayout",
    "KvOp",
    "Marker",
    "Pause",
    "Remove",
    "Replace",
    "SdkOp",
    "decode_marker",
    "decode_record",
    "decode_seen",
    "documents",
    "encode_marker",
    "encode_record",
    "sdk_call",
    "sdk_miss",
    "sdk_result",
    "transcoder",
]

T = TypeVar("T")

MAGIC = b"orS2"
#: The current format's header: magic, version, created µs, expires µs, count level, end.
HEADER = struct.Struct(">4sQqqBq")
OWNED_MAGIC = b"orU1"
#: What follows the header of a bound record: seen µs, then the owner's fields.
_SEEN = struct.Struct(">q")
_NONE_16, _NONE_8 = 0xFFFF, 0xFF
MARKER_MAGIC = b"orM2"
#: A moved marker: magic, expires µs, renamed µs, the 64-hex key moved to.
MARKER = struct.Struct(">4sqq64s")
_STORAGE_KEY = re.compile(r"[0-9a-f]{64}")
# Couchbase document ids are at most 250 bytes: 100 for the prefix leaves room for the
# 64-character key and for the counters' names.
_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{0,100}")
_BINARY = RawBinaryTranscoder()
_JSON = RawJSONTranscoder()  # count documents: bytes we encode ourselves, flagged as JSON


class KeyLayout:
    """Where each document lives: ``<prefix><64 hex>`` for sessions, ``<prefix>count:...``
    for the counters of ``count`` (see :mod:`~.counters`), ``<prefix>user:<64 hex>`` for
    a user's index (see :mod:`~.index`)."""

    __slots__ = ("levels_key", "prefix")

    def __init__(self, prefix: str) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ConfigurationError(
                "key_prefix must be at most 100 characters of A-Z, a-z, 0-9, '_', '.', ':' or '-'"
            )
        self.prefix = prefix
        self.levels_key = f"{prefix}count:levels"

    def document_key(self, key: str) -> str:
        # The manager hands over SHA-256 hex digests of ids, never ids: refusing anything
        # else keeps a raw id (or an injected key) from ever becoming a document id.
        if not _STORAGE_KEY.fullmatch(key):
            raise ValueError("not a storage key (64 lowercase hex characters)")
        return self.prefix + key

    def user_key(self, user_id: str) -> str:
        """The index document of ``user_id``: named by a SHA-256 of the id, so any user id
        (up to 255 characters of any script, ``:`` and spaces included) makes a valid
        document id of fixed length."""
        digest = hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.prefix}user:{digest}"

    def counter_key(self, bucket: Bucket) -> str:
        return f"{self.prefix}count:{bucket.level}:{bucket.end}"

    @property
    def probe_key(self) -> str:
        """A key that is never written: reading it checks bucket, scope and collection."""
        return self.prefix + "probe"


# -- records -------------------------------------------------------------------------------
def encode_record(record: StoredSession, bucket: Bucket, seen_us: int = 0) -> bytes:
    """``record`` as stored, counted in ``bucket``; ``seen_us`` (the write's ``now``) is
    kept only for a bound record, the only kind a user's listing shows."""
    owner = record.owner
    header = HEADER.pack(
        MAGIC if owner is None else OWNED_MAGIC,
        record.version,
        record.created_us,
        record.expires_us,
        bucket.level,
        bucket.end,
    )
    if owner is None:
        return header + record.data
    return b"".join((header, _SEEN.pack(seen_us), _encode_owner(owner), record.data))


def decode_record(raw: bytes | None) -> tuple[StoredSession, Bucket] | None:
    """The record in ``raw`` and the bucket it is counted in; None for a document that is
    not one of ours (another format, or one written by something else under our prefix)."""
    if raw is None or len(raw) < HEADER.size:
        return None
    if raw.startswith(MAGIC):  # an unbound session: the header, then the data
        _magic, version, created, expires, level, end = HEADER.unpack_from(raw)
        return StoredSession(raw[HEADER.size :], version, created, expires), Bucket(level, end)
    if raw.startswith(OWNED_MAGIC):
        return _decode_owned(raw)
    return None


def decode_seen(raw: bytes) -> int:
    """When a bound record (one :func:`decode_record` accepted with an owner) was last
    written."""
    (seen,) = _SEEN.unpack_from(raw, HEADER.size)
    return int(seen)


def _decode_owned(raw: bytes) -> tuple[StoredSession, Bucket] | None:
    _magic, version, created, expires, level, end = HEADER.unpack_from(raw)
    try:
        offset = HEADER.size + _SEEN.size
        user_id, offset = _field(raw, offset, 2)
        handle, offset = _field(raw, offset, 1)
        user_agent, offset = _field(raw, offset, 2)
        ip, offset = _field(raw, offset, 1)
    except (ValueError, struct.error):
        return None  # cut short or not UTF-8: not a record of ours
    if user_id is None or handle is None:
        return None
    owner = Owner(user_id, handle, user_agent, ip)
    record = StoredSession(raw[offset:], version, created, expires, owner)
    return record, Bucket(level, end)


def _encode_owner(owner: Owner) -> bytes:
    return b"".join(
        (
            _pack_field(owner.user_id, 2),
            _pack_field(owner.handle, 1),
            _pack_field(owner.user_agent, 2),
            _pack_field(owner.ip, 1),
        )
    )


def _pack_field(text: str | None, width: int) -> bytes:
    """A length-prefixed UTF-8 field (all-ones length: None). The contract's limits (255
    characters of user id, 512 of user agent, 45 of address, 32 of handle) fit the
    widths even at four bytes a character."""
    none = _NONE_16 if width == 2 else _NONE_8
    if text is None:
        return none.to_bytes(width, "big")
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) >= none:
        raise ValueError("an owner field is longer than the record format allows")
    return len(encoded).to_bytes(width, "big") + encoded


def _field(raw: bytes, offset: int, width: int) -> tuple[str | None, int]:
    size = int.from_bytes(raw[offset : offset + width], "big")
    if len(raw) < offset + width:
        raise ValueError("cut short")
    offset += width
    if size == (_NONE_16 if width == 2 else _NONE_8):
        return None, offset
    if len(raw) < offset + size:
        raise ValueError("cut short")
    return raw[offset : offset + size].decode("utf-8", "surrogatepass"), offset + size


class Marker(NamedTuple):
    """A moved marker decoded."""

    #: The key the session moved to.
    to: str
    expires_us: int
    #: The rename's ``now`` (``moved`` answers only for a grace after it).
    renamed_us: int


def encode_marker(new_key: str, expires_us: int, renamed_us: int) -> bytes:
    """The moved marker a rename to ``new_key`` at ``renamed_us``, expiring at
    ``expires_us``, leaves."""
    return MARKER.pack(MARKER_MAGIC, expires_us, renamed_us, new_key.encode("ascii"))


def decode_marker(raw: bytes | None) -> Marker | None:
    """The moved marker in ``raw``; None for anything else (a marker naming anything but a
    storage key is not one of ours)."""
    if raw is None or len(raw) != MARKER.size or not raw.startswith(MARKER_MAGIC):
        return None
    _magic, expires, renamed, new_key = MARKER.unpack(raw)
    key = new_key.decode("ascii", "replace")
    return Marker(key, expires, renamed) if _STORAGE_KEY.fullmatch(key) else None


# -- the KV operations flows yield ---------------------------------------------------------
# Doc and Get are made on every read: NamedTuples, built several times faster than frozen
# dataclasses (which set each field through object.__setattr__), and as immutable.
class Doc(NamedTuple):
    """A document read: its value (None when not in the expected format) and CAS."""

    value: bytes | None
    cas: int


class Get(NamedTuple):
    """-> :class:`Doc`, or None when missing."""

    key: str
    json: bool = False


@dataclass(frozen=True, slots=True)
class GetMany:
    """-> ``{key: Doc}`` of the documents that exist."""

    keys: tuple[str, ...]
    json: bool = True


@dataclass(frozen=True, slots=True)
class Insert:
    """-> the new CAS, or None when the key exists. ``expiry`` None: no TTL."""

    key: str
    value: bytes
    expiry: timedelta | None
    json: bool = False


@dataclass(frozen=True, slots=True)
class Replace:
    """-> the new CAS, or None when the CAS no longer matches (or the document is gone).
    ``expiry`` None: no TTL (a replace without one clears the document's)."""

    key: str
    value: bytes
    cas: int
    expiry: timedelta | None
    json: bool = False


@dataclass(frozen=True, slots=True)
class Remove:
    """-> True if removed; False when missing (or, with a CAS, changed meanwhile)."""

    key: str
    cas: int = 0


@dataclass(frozen=True, slots=True)
class Count:
    """Add ``delta`` (+1 or -1) to a counter -> True; False when the counter is missing.

    An increment creates a missing counter (at 1, with ``expiry``); a decrement never
    creates one (a missing counter has expired with its bucket), and stops at 0.
    """

    key: str
    delta: int
    expiry: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Pause:
    """Back off for a moment before retrying a lost compare-and-set."""

    seconds: float


KvOp = Get | GetMany | Insert | Replace | Remove | Count | Pause
#: The operations that are one SDK call on the collection (or its binary() view).
SdkOp = Get | Insert | Replace | Remove | Count
#: A repository operation as a generator: yields KV operations, receives their results.
Flow = Generator[KvOp, Any, T]


def transcoder(json: bool) -> Any:
    """How a document's bytes are flagged: binary for sessions, JSON for count documents."""
    return _JSON if json else _BINARY


# Built once: the SDK copies an options object before using it, and every request reads.
_GET_OPTIONS = {False: GetOptions(transcoder=_BINARY), True: GetOptions(transcoder=_JSON)}


def sdk_call(collection: Any, op: SdkOp) -> Callable[[], Any]:
    """``op`` as a call of ``collection``'s SDK method, not made yet: the sync repository
    calls it for the result, the async one awaits what calling it returns."""
    if isinstance(op, Get):
        return partial(collection.get, op.key, _GET_OPTIONS[op.json])
    if isinstance(op, Replace):
        # Replace drops a document's expiry unless given one: pass it whenever there is
        # one (only a user index without a time limit has none).
        return partial(
            collection.replace,
            op.key,
            op.value,
            cas=op.cas,
            transcoder=transcoder(op.json),
            **_expiry(op.expiry),
        )
    if isinstance(op, Insert):
        return partial(
            collection.insert,
            op.key,
            op.value,
            transcoder=transcoder(op.json),
            **_expiry(op.expiry),
        )
    if isinstance(op, Count):
        if op.delta > 0:
            # Created at 1 (the initial value, the delta is not added) with its TTL.
            increment = IncrementOptions(
                delta=DeltaValue(op.delta), initial=SignedInt64(1), expiry=op.expiry
            )
            return partial(collection.binary().increment, op.key, increment)
        # A negative initial value: never create the counter.
        decrement = DecrementOptions(delta=DeltaValue(-op.delta), initial=SignedInt64(-1))
        return partial(collection.binary().decrement, op.key, decrement)
    if op.cas:
        return partial(collection.remove, op.key, RemoveOptions(cas=op.cas))
    return partial(collection.remove, op.key)


def _expiry(expiry: timedelta | None) -> dict[str, timedelta]:
    return {} if expiry is None else {"expiry": expiry}


def sdk_result(op: SdkOp, result: Any) -> Any:
    """What a flow receives for a successful SDK call."""
    if isinstance(op, Get):
        return _document(result)
    if isinstance(op, Insert | Replace):
        return result.cas
    return True


def _document(result: Any) -> Doc:
    """The :class:`Doc` in a successful ``get``'s result."""
    try:
        value = result.value  # decoded lazily, by the flags the document was stored with
    except ValueFormatException:
        value = None
    return Doc(value, result.cas)


#: The SDK exceptions that are an ordinary answer to an operation, not a failure, and
#: that answer.
_MISSES: dict[type, tuple[tuple[type[Exception], ...], Any]] = {
    Get: ((DocumentNotFoundException,), None),
    Insert: ((DocumentExistsException,), None),
    Replace: ((CasMismatchException, DocumentNotFoundException, DocumentExistsException), None),
    Remove: ((CasMismatchException, DocumentNotFoundException, DocumentExistsException), False),
    Count: ((DocumentNotFoundException,), False),
}


def sdk_miss(op: KvOp, exc: Exception) -> tuple[bool, Any]:
    """``(True, answer)`` when ``exc`` is an expected answer to ``op`` (a missing document,
    a taken key, a changed CAS); ``(False, None)`` for a real failure."""
    misses, answer = _MISSES.get(type(op), ((), None))
    return (True, answer) if isinstance(exc, misses) else (False, None)


def documents(outcomes: Iterable[tuple[str, Any]]) -> dict[str, Doc]:
    """``{key: Doc}`` of a batched read, from each key's SDK result or exception: a missing
    document is simply absent, any other failure is raised (the first one)."""
    found: dict[str, Doc] = {}
    for key, outcome in outcomes:
        if isinstance(outcome, DocumentNotFoundException):
            continue
        if isinstance(outcome, BaseException):
            raise outcome
        found[key] = _document(outcome)
    return found
