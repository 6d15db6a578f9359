"""What the sync and async Couchbase repositories share, with no I/O: the key layout, the
record encoding, the KV operations their flows yield, and how each becomes an SDK call.

Record layout (one binary document per session, stored with ``RawBinaryTranscoder``)::

    offset  size  field
    0       4     magic b"orS1" (format 1 of ormsession's session record)
    4       8     version, unsigned big-endian (the compare-and-set counter)
    12      8     created_at, signed big-endian microseconds since the Unix epoch (UTC)
    20      8     expires_at, same encoding
    28      ...   data: the serialized session, byte for byte

Why binary and not JSON: session data is already bytes (JSON or msgpack from the
serializer); base64 inside a JSON document would cost a third more space and an encode and
decode per operation, and a 28-byte header decodes without parsing the data. The binary
common flag lets other SDKs and tools read the document as bytes. The cost: the web console
shows it as binary and N1QL cannot query it (the count index makes N1QL unnecessary).
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from couchbase.auth import PasswordAuthenticator
from couchbase.exceptions import (
    CasMismatchException,
    DocumentExistsException,
    DocumentNotFoundException,
    ValueFormatException,
)
from couchbase.options import (
    ClusterOptions,
    ClusterTimeoutOptions,
    GetMultiOptions,
    GetOptions,
    InsertOptions,
    RemoveOptions,
    ReplaceOptions,
)
from couchbase.transcoder import RawBinaryTranscoder, RawJSONTranscoder

from ormsession.errors import ConfigurationError
from ormsession.repositories.base import StoredSession
from ormsession.repositories.couchbase.index import IndexLayout
from ormsession.repositories.couchbase.urls import CouchbaseTarget

__all__ = [
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
    "cluster_options",
    "decode_record",
    "encode_record",
    "expiry_for",
    "get_many_options",
    "get_many_result",
    "sdk_call",
    "sdk_miss",
    "sdk_result",
]

T = TypeVar("T")

MAGIC = b"orS1"
_HEADER = struct.Struct(">4sQqq")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_STORAGE_KEY = re.compile(r"[0-9a-f]{64}")
# Couchbase document ids are at most 250 bytes: 100 for the prefix leaves room for the
# 64-character key and for the count index's names.
_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{0,100}")
_BINARY = RawBinaryTranscoder()
_JSON = RawJSONTranscoder()  # index documents: bytes we encode ourselves, flagged as JSON


class KeyLayout:
    """Where each record lives: ``<prefix><64 hex>`` for sessions, plus the count index."""

    __slots__ = ("index", "prefix")

    def __init__(self, prefix: str, index_shards: int) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ConfigurationError(
                "key_prefix must be at most 100 characters of A-Z, a-z, 0-9, '_', '.', ':' or '-'"
            )
        self.prefix = prefix
        self.index = IndexLayout(prefix, index_shards)

    def document_key(self, key: str) -> str:
        # The manager hands over SHA-256 hex digests of ids, never ids: refusing anything
        # else keeps a raw id (or an injected key) from ever becoming a document id.
        if not _STORAGE_KEY.fullmatch(key):
            raise ValueError("not a storage key (64 lowercase hex characters)")
        return self.prefix + key

    @property
    def probe_key(self) -> str:
        """A key that is never written: reading it checks bucket, scope and collection."""
        return self.prefix + "probe"


# -- records -------------------------------------------------------------------------------
def encode_record(record: StoredSession) -> bytes:
    header = _HEADER.pack(
        MAGIC, record.version, _micros(record.created_at), _micros(record.expires_at)
    )
    return header + record.data


def decode_record(raw: bytes | None) -> StoredSession | None:
    """The record in ``raw``; None for a document that is not one of ours (another
    format, or one written by something else under our prefix)."""
    if raw is None or len(raw) < _HEADER.size or not raw.startswith(MAGIC):
        return None
    _magic, version, created, expires = _HEADER.unpack_from(raw)
    return StoredSession(
        data=raw[_HEADER.size :],
        version=version,
        created_at=_EPOCH + created * _US,
        expires_at=_EPOCH + expires * _US,
    )


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _US


def expiry_for(expires_at: datetime, now: datetime) -> timedelta:
    """The document TTL for a record that expires at ``expires_at``, as a timedelta.

    Always a timedelta: the SDK turns one above 30 days into the absolute Unix time the
    server expects (raw seconds above 30 days would be read as a date in 1970, and expire
    at once: beego's bug). Whole seconds, rounded up and at least one, because the SDK
    truncates and 0 means "never expire". Reads judge by the stored ``expires_at`` anyway;
    the TTL only has the server remove the document soon after.
    """
    seconds = math.ceil((expires_at - now).total_seconds())
    return timedelta(seconds=max(1, seconds))


# -- the KV operations flows yield ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Doc:
    """A document read: its value (None when not in the expected format) and CAS."""

    value: bytes | None
    cas: int


@dataclass(frozen=True, slots=True)
class Get:
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
class Pause:
    """Back off for a moment before retrying a lost compare-and-set."""

    seconds: float


KvOp = Get | GetMany | Insert | Replace | Remove | Pause
#: A repository operation as a generator: yields KV operations, receives their results.
Flow = Generator[KvOp, Any, T]


def _transcoder(json: bool) -> Any:
    return _JSON if json else _BINARY


def sdk_call(op: Get | Insert | Replace | Remove) -> tuple[str, tuple[Any, ...]]:
    """The collection method and arguments for ``op``."""
    if isinstance(op, Get):
        return "get", (op.key, GetOptions(transcoder=_transcoder(op.json)))
    if isinstance(op, Insert):
        options = InsertOptions(expiry=op.expiry, transcoder=_transcoder(op.json))
        return "insert", (op.key, op.value, options)
    if isinstance(op, Replace):
        # Replace drops a document's expiry unless given one: always pass it.
        options = ReplaceOptions(cas=op.cas, expiry=op.expiry, transcoder=_transcoder(op.json))
        return "replace", (op.key, op.value, options)
    return "remove", ((op.key, RemoveOptions(cas=op.cas)) if op.cas else (op.key,))


def sdk_result(op: Get | Insert | Replace | Remove, result: Any) -> Any:
    """What a flow receives for a successful SDK call."""
    if isinstance(op, Get):
        try:
            value = result.value  # decoded lazily, by the flags the document was stored with
        except ValueFormatException:
            value = None
        return Doc(value, result.cas)
    if isinstance(op, Insert | Replace):
        return result.cas
    return True


#: The SDK exceptions that are an ordinary answer of each operation, not a failure.
_MISSES: dict[type, tuple[type[Exception], ...]] = {
    Get: (DocumentNotFoundException,),
    Insert: (DocumentExistsException,),
    Replace: (CasMismatchException, DocumentNotFoundException, DocumentExistsException),
    Remove: (CasMismatchException, DocumentNotFoundException, DocumentExistsException),
}
_MISS_RESULT: dict[type, Any] = {Get: None, Insert: None, Replace: None, Remove: False}


def sdk_miss(op: Get | Insert | Replace | Remove, exc: Exception) -> tuple[bool, Any]:
    """``(True, result)`` when ``exc`` is an expected answer to ``op`` (a missing document,
    a taken key, a changed CAS); ``(False, None)`` for a real failure."""
    if isinstance(exc, _MISSES[type(op)]):
        return True, _MISS_RESULT[type(op)]
    return False, None


def get_many_options(op: GetMany) -> Any:
    return GetMultiOptions(transcoder=_transcoder(op.json))


def get_many_result(
    op: GetMany, results: Mapping[str, Any], failures: Mapping[str, Exception]
) -> dict[str, Doc]:
    """``{key: Doc}`` of a batched read; a missing document is simply absent, any other
    failure is raised (the first one)."""
    for key, exc in failures.items():
        missing, _ = sdk_miss(Get(key, op.json), exc)
        if not missing:
            raise exc
    return {key: sdk_result(Get(key, op.json), result) for key, result in results.items()}


def cluster_options(target: CouchbaseTarget) -> Any:
    """``ClusterOptions`` for a cluster ormsession opens itself.

    ``bootstrap_timeout`` bounds connecting *and* authenticating, so a wrong host, port or
    password fails within ``connect_timeout`` rather than the SDK's default 10 seconds.
    """
    if target.username is None or target.password is None:
        raise ConfigurationError(f"Couchbase needs a username and password ({target.display})")
    timeouts = ClusterTimeoutOptions(
        kv_timeout=target.kv_timeout,
        connect_timeout=target.connect_timeout,
        bootstrap_timeout=target.connect_timeout,
    )
    authenticator = PasswordAuthenticator(
        target.username, target.password, cert_path=target.trust_store_path
    )
    return ClusterOptions(authenticator, timeout_options=timeouts)
