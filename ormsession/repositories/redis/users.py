"""The Redis stores' user index, with no I/O: the owner a bound value carries, the index
entries, and the flows of ``sessions_of``, ``revoke`` and ``revoke_all``.

Keys (``P`` is the key prefix)::

    P user:<sha256(user id), 64 hex>   a hash: session key (64 hex) -> entry (8 bytes: µs
                                        when filed; then the session's handle)

The user id is hashed: ids may hold ``{``, ``}``, ``:`` and any unicode, and never appear in
a key name. The index lives in its own Cluster slot (no hash tag), apart from the sessions.

On plain Redis and Sentinel every call that changes the index does so inside the one script
that writes the session (create, rename, delete) or ends the user's sessions (USER_REVOKE),
so the index names exactly the user's live sessions, plus the entries of sessions that
expired, which USER_LIST and USER_REVOKE drop as they pass.

On Cluster the index and the sessions are in different slots, and no script spans slots.
The protocol keeps the index a *superset* of the user's live session keys, or of keys whose
moved markers lead to them: a key is filed (USER_ADD) before the script that makes it live
(CREATE), and an entry is dropped only when what it names is gone for good (a record
that is not this user's, or a revoke ended it), or holds nothing and was filed more than
:data:`ENTRY_GRACE_US` ago (a create or move in flight files its key, then writes it: the
two commands follow each other at once). See docs/stores/redis.md, "A user's sessions".
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any, NamedTuple

from ormsession.repositories.base import OwnedSession, Owner, StoredSession
from ormsession.repositories.redis.scripts import OWNED_FORMAT, OWNED_HEAD

__all__ = [
    "ENTRY_GRACE_US",
    "HEAD_BYTES",
    "Head",
    "decode_head",
    "decode_owner_block",
    "encode_owner_block",
    "entry_handle",
    "entry_time",
    "index_entry",
    "ttl_arg",
    "user_index_id",
]

#: An index entry naming nothing is kept this long after it was filed: longer than any
#: create or move in flight takes between filing its key and writing it.
ENTRY_GRACE_US = 600 * 1_000_000
#: Enough of a value to hold its header and the longest owner (user id, handle, user agent
#: and IP at their longest, four bytes a character): what a Cluster listing reads.
HEAD_BYTES = 4096
# Header (as format 2), seen µs; then the index id and the owner fields' length.
_OWNED_HEADER = struct.Struct(">BQQQBQQ")
_FIELD_LENGTH = struct.Struct(">H")
_NONE = 0xFFFF
_ENTRY_TIME = struct.Struct(">Q")
_TTL = struct.Struct(">Q")


def user_index_id(user_id: str) -> str:
    """The user's index id: SHA-256 of the user id (UTF-8), 64 hex characters."""
    return hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()


def encode_owner_block(owner: Owner) -> bytes:
    """Bytes 43 on of a bound value, up to the data: index id, fields' length, fields."""
    fields = b"".join(
        _field(text) for text in (owner.user_id, owner.handle, owner.user_agent, owner.ip)
    )
    return user_index_id(owner.user_id).encode("ascii") + _FIELD_LENGTH.pack(len(fields)) + fields


def _field(text: str | None) -> bytes:
    if text is None:
        return _FIELD_LENGTH.pack(_NONE)
    raw = text.encode("utf-8", "surrogatepass")
    return _FIELD_LENGTH.pack(len(raw)) + raw


def decode_owner_block(raw: bytes, at: int) -> tuple[Owner, int] | None:
    """The owner whose block starts at ``raw[at]`` (after the index id), and where the
    data starts; None if it does not fit."""
    if len(raw) < at + 66:
        return None
    (size,) = _FIELD_LENGTH.unpack_from(raw, at + 64)
    start = at + 66
    end = start + size
    if len(raw) < end:
        return None
    fields: list[str | None] = []
    position = start
    for _ in range(4):
        if position + 2 > end:
            return None
        (length,) = _FIELD_LENGTH.unpack_from(raw, position)
        position += 2
        if length == _NONE:
            fields.append(None)
            continue
        fields.append(raw[position : position + length].decode("utf-8", "surrogatepass"))
        position += length
    user_id, handle, user_agent, ip = fields
    if user_id is None or handle is None or position != end:
        return None
    return Owner(user_id, handle, user_agent, ip), end


class Head(NamedTuple):
    """What a bound value says before its data."""

    record: StoredSession  # data empty
    seen_us: int
    owner: Owner
    #: Where the data starts.
    data_at: int


def decode_head(raw: bytes) -> Head | None:
    """The head of a bound (format 4) value, whole or cut after its owner; else None."""
    if len(raw) < OWNED_HEAD or raw[0] != OWNED_FORMAT:
        return None
    _, version, created, expires, _level, _end, seen = _OWNED_HEADER.unpack_from(raw)
    decoded = decode_owner_block(raw, _OWNED_HEADER.size)
    if decoded is None:
        return None
    owner, data_at = decoded
    return Head(StoredSession(b"", version, created, expires, owner), seen, owner, data_at)


def owned_session(key: str, head: Head) -> OwnedSession:
    return OwnedSession(
        key, head.owner, head.record.created_us, head.seen_us, head.record.expires_us
    )


def index_entry(handle: str, now_us: int) -> bytes:
    """A user index entry: when filed, and the handle."""
    return _ENTRY_TIME.pack(now_us) + handle.encode("ascii")


def entry_time(entry: bytes) -> int:
    return int(_ENTRY_TIME.unpack_from(entry)[0]) if len(entry) >= 8 else 0


def entry_handle(entry: bytes) -> str:
    return entry[8:].decode("ascii", "replace")


def ttl_arg(until_us: int | None, now_us: int) -> bytes:
    """The scripts' index TTL argument: ms until ``until_us`` (at least 1), 0 for none."""
    if until_us is None:
        return _TTL.pack(0)
    return _TTL.pack(max(1, -(-(until_us - now_us) // 1000)))


def pairs(reply: Any) -> list[tuple[str, bytes]]:
    """A flat ``[key, value, key, value, ...]`` reply (USER_LIST, HGETALL), or the dict
    redis-py makes of HGETALL's, as pairs, with the keys decoded."""
    if isinstance(reply, dict):
        items: list[Any] = [part for pair in reply.items() for part in pair]
    else:
        items = list(reply or [])
    return [
        (bytes(items[number]).decode("ascii", "replace"), bytes(items[number + 1]))
        for number in range(0, len(items) - 1, 2)
    ]
