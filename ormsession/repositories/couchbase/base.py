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

A rename replaces the old document with a *moved marker* (same transcoder), 76 bytes::

    offset  size  field
    0       4     magic b"orM1" (an ormsession moved marker)
    4       8     expires_at of the rename, signed big-endian microseconds (UTC)
    12      64    the key the session moved to (64 lowercase hex characters)

It holds no data and is counted nowhere; the flows read it as "no session" (without the
warning a foreign document gets), refuse to create over it until it expires, and follow
it when deleting (see :mod:`~.flows`).

Why binary and not JSON: session data is already bytes (JSON or msgpack from the
serializer); base64 inside a JSON document would cost a third more space and an encode and
decode per operation, and a fixed header decodes without parsing the data. The binary
common flag lets other SDKs and tools read the document as bytes. The cost: the web console
shows it as binary and N1QL cannot query it (the count counters make N1QL unnecessary).
"""

from __future__ import annotations

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
from ormsession.repositories.base import StoredSession
from ormsession.repositories.couchbase.counters import Bucket

__all__ = [
    "HEADER",
    "MAGIC",
    "MARKER",
    "MARKER_MAGIC",
    "Count",
    "Doc",
    "Flow",
    "Get",
    "GetMany",
    "Insert",
    "KeyLayout",
    "KvOp",
    "Pause",
    "Remove",
    "Replace",
    "SdkOp",
    "decode_marker",
    "decode_record",
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
MARKER_MAGIC = b"orM1"
#: A moved marker: magic, expires µs, the 64-hex key moved to.
MARKER = struct.Struct(">4sq64s")
_STORAGE_KEY = re.compile(r"[0-9a-f]{64}")
# Couchbase document ids are at most 250 bytes: 100 for the prefix leaves room for the
# 64-character key and for the counters' names.
_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{0,100}")
_BINARY = RawBinaryTranscoder()
_JSON = RawJSONTranscoder()  # count documents: bytes we encode ourselves, flagged as JSON


class KeyLayout:
    """Where each document lives: ``<prefix><64 hex>`` for sessions, ``<prefix>count:...``
    for the counters of ``count`` (see :mod:`~.counters`)."""

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

    def counter_key(self, bucket: Bucket) -> str:
        return f"{self.prefix}count:{bucket.level}:{bucket.end}"

    @property
    def probe_key(self) -> str:
        """A key that is never written: reading it checks bucket, scope and collection."""
        return self.prefix + "probe"


# -- records -------------------------------------------------------------------------------
def encode_record(record: StoredSession, bucket: Bucket) -> bytes:
    header = HEADER.pack(
        MAGIC, record.version, record.created_us, record.expires_us, bucket.level, bucket.end
    )
    return header + record.data


def decode_record(raw: bytes | None) -> tuple[StoredSession, Bucket] | None:
    """The record in ``raw`` and the bucket it is counted in; None for a document that is
    not one of ours (another format, or one written by something else under our prefix)."""
    if raw is None or len(raw) < HEADER.size or not raw.startswith(MAGIC):
        return None
    _magic, version, created, expires, level, end = HEADER.unpack_from(raw)
    return StoredSession(raw[HEADER.size :], version, created, expires), Bucket(level, end)


def encode_marker(new_key: str, expires_us: int) -> bytes:
    """The moved marker a rename to ``new_key``, expiring at ``expires_us``, leaves."""
    return MARKER.pack(MARKER_MAGIC, expires_us, new_key.encode("ascii"))


def decode_marker(raw: bytes | None) -> tuple[str, int] | None:
    """``(new key, expires µs)`` of a moved marker; None for anything else (a marker
    naming anything but a storage key is not one of ours)."""
    if raw is None or len(raw) != MARKER.size or not raw.startswith(MARKER_MAGIC):
        return None
    _magic, expires, new_key = MARKER.unpack(raw)
    key = new_key.decode("ascii", "replace")
    return (key, expires) if _STORAGE_KEY.fullmatch(key) else None


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
    """-> the new CAS, or None when the key exists."""

    key: str
    value: bytes
    expiry: timedelta
    json: bool = False


@dataclass(frozen=True, slots=True)
class Replace:
    """-> the new CAS, or None when the CAS no longer matches (or the document is gone)."""

    key: str
    value: bytes
    cas: int
    expiry: timedelta
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
        # Replace drops a document's expiry unless given one: always pass it.
        return partial(
            collection.replace,
            op.key,
            op.value,
            cas=op.cas,
            expiry=op.expiry,
            transcoder=transcoder(op.json),
        )
    if isinstance(op, Insert):
        return partial(
            collection.insert, op.key, op.value, expiry=op.expiry, transcoder=transcoder(op.json)
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
