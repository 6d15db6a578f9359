"""The count index: which sessions exist under a key prefix, and until when. No I/O.

Couchbase cannot count documents by key prefix without the query service (N1QL), and the
contract's ``count(now)`` must judge expiry by a given ``now``. So the store keeps its own
index: ``index_shards`` JSON documents per key prefix (``<prefix>count:<shards>:<n>``), each
mapping the session keys of its shard to ``[expires_at in µs since the epoch, CAS of the
session write]``:

    {"format": 1, "sessions": {"3f9a…": [1767225600000000, 1795608995296482441], …}}

Every session write that changes a session's existence or expiry writes its shard
(compare-and-set, retried); ``count`` reads every shard and counts entries with
``expires_at > now``. Entries carry the session document's CAS so that two writes of one
session whose index updates arrive out of order keep the later one. Expired entries are
dropped whenever a shard is rewritten, and each shard document expires (native TTL) an
hour after its last entry, so an abandoned prefix leaves nothing behind.

See ``docs/stores/couchbase.md`` for the cost and accuracy of this design.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "DEFAULT_INDEX_SHARDS",
    "MAX_INDEX_SHARDS",
    "Entry",
    "IndexLayout",
    "apply_changes",
    "decode_shard",
    "encode_shard",
    "live_entries",
    "shard_expiry",
    "to_us",
]

logger = logging.getLogger("ormsession")

#: 64 shards: ``count`` reads 64 small documents (one batched round trip), and each
#: session write rewrites 1/64 of the index.
DEFAULT_INDEX_SHARDS = 64
MAX_INDEX_SHARDS = 4096
FORMAT = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: How long a shard document outlives its last entry (then the TTL removes it).
SHARD_GRACE = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Entry:
    """One session in the index: when it expires, and the CAS of the write that said so."""

    expires_us: int
    cas: int


#: A change to the index: key -> its new entry, or None to remove it.
Changes = Mapping[str, Entry | None]


class IndexLayout:
    """Names and assigns the shard documents of one key prefix."""

    __slots__ = ("prefix", "shards")

    def __init__(self, prefix: str, shards: int) -> None:
        self.prefix = prefix
        self.shards = shards

    def shard_key(self, number: int) -> str:
        # The shard count is part of the name: changing index_shards starts a fresh index
        # rather than mixing two assignments of keys to shards.
        return f"{self.prefix}count:{self.shards}:{number}"

    def shard_keys(self) -> tuple[str, ...]:
        return tuple(self.shard_key(n) for n in range(self.shards))

    def shard_key_for(self, key: str) -> str:
        # Keys are SHA-256 hex: their leading digits are uniformly distributed.
        return self.shard_key(int(key[:8], 16) % self.shards)

    def group(self, changes: Changes) -> dict[str, dict[str, Entry | None]]:
        """``changes`` split by the shard document each key lives in."""
        grouped: dict[str, dict[str, Entry | None]] = {}
        for key, entry in changes.items():
            grouped.setdefault(self.shard_key_for(key), {})[key] = entry
        return grouped


def to_us(moment: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch: exact (datetimes carry
    microseconds), so the index judges expiry at exactly the instant reads do."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def decode_shard(raw: bytes | None) -> dict[str, Entry]:
    """The entries of a shard document (empty for a missing or unreadable one)."""
    if raw is None:
        return {}
    try:
        document = json.loads(raw)
        if document.get("format") != FORMAT:
            raise ValueError("unknown index format")
        sessions = document["sessions"]
        return {key: Entry(int(value[0]), int(value[1])) for key, value in sessions.items()}
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        # Rewritten on its next update; until then count misses this shard's sessions.
        logger.warning("unreadable couchbase count index shard; it will be rebuilt")
        return {}


def encode_shard(entries: Mapping[str, Entry]) -> bytes:
    sessions = {key: [entry.expires_us, entry.cas] for key, entry in entries.items()}
    return json.dumps({"format": FORMAT, "sessions": sessions}, separators=(",", ":")).encode()


def apply_changes(
    entries: Mapping[str, Entry], changes: Mapping[str, Entry | None], now: datetime
) -> dict[str, Entry] | None:
    """The shard's entries after ``changes`` (expired ones pruned), or None when the
    changes alter nothing, so the caller can skip the write."""
    updated = dict(entries)
    changed = False
    for key, entry in changes.items():
        current = updated.get(key)
        if entry is None:
            changed |= updated.pop(key, None) is not None
        elif current is None or (current != entry and entry.cas >= current.cas):
            # An entry from an older write of the session (lower CAS) never overwrites a
            # newer one: index updates of concurrent writes may land in either order.
            updated[key] = entry
            changed = True
    if not changed:
        return None
    now_us = to_us(now)
    return {key: entry for key, entry in updated.items() if entry.expires_us > now_us}


def live_entries(entries: Mapping[str, Entry], now: datetime) -> int:
    """How many entries are live at ``now`` (``expires_at > now``, as reads judge)."""
    now_us = to_us(now)
    return sum(1 for entry in entries.values() if entry.expires_us > now_us)


def shard_expiry(entries: Mapping[str, Entry], now: datetime) -> timedelta:
    """How long the shard document should live: past its last entry, plus a grace."""
    last = max((entry.expires_us for entry in entries.values()), default=0)
    remaining = timedelta(microseconds=max(0, last - to_us(now)))
    return remaining + SHARD_GRACE
