"""What a repository last saw of each session document: a bounded LRU of CAS hints. No I/O.

A compare-and-set update needs the document's CAS, its version, creation time, expiry,
count bucket and owner. Reading them costs a round trip, yet the request that saves a session nearly
always read it moments before (``open``), or wrote it itself (the previous save). So every
read and write leaves its result here, and ``update`` (and ``delete``) first try a
``replace`` (``remove``) guarded by the remembered CAS: one round trip.

The cache is only a hint. The server accepts the guarded write only if the document's CAS
is still the one remembered, and the CAS changes with every mutation of the document (by
any process), so a match proves the document is exactly the state the hint describes. A
stale hint costs one failed operation, then the flow reads the document as it would have
without a cache; it can never make a write land on a state it did not check.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

from ormsession.repositories.base import Owner
from ormsession.repositories.couchbase.counters import Bucket

__all__ = ["DEFAULT_CACHE_SIZE", "MAX_CACHE_SIZE", "Hint", "HintCache"]

#: Enough for the sessions between their read and their save across a busy process.
DEFAULT_CACHE_SIZE = 10_000
MAX_CACHE_SIZE = 1_000_000


class Hint(NamedTuple):
    """A session document's header as of one CAS (a NamedTuple: every read makes one),
    with its owner: a write from the hint rewrites the record whole, owner included."""

    cas: int
    version: int
    created_us: int
    expires_us: int
    bucket: Bucket
    owner: Owner | None = None


class HintCache:
    """``storage key -> Hint``, least recently used first out; thread-safe (the sync
    repository is shared by threads). ``size`` 0 turns it off."""

    __slots__ = ("_entries", "_lock", "size")

    def __init__(self, size: int = DEFAULT_CACHE_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[str, Hint] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Hint | None:
        with self._lock:
            hint = self._entries.get(key)
            if hint is not None:
                self._entries.move_to_end(key)
            return hint

    def put(self, key: str, hint: Hint) -> None:
        if not self.size:
            return
        entries = self._entries
        with self._lock:
            known = entries.get(key)
            if known is None:  # a new key goes in last, the most recent, already
                entries[key] = hint
                if len(entries) > self.size:
                    entries.popitem(last=False)
                return
            # Of two racing answers keep the later state: CAS values grow (they are hybrid
            # logical clock stamps), also across a delete and a re-create. (A hint refused
            # by the server is dropped before the document is read again, so even a CAS
            # rolled back by a failover cannot pin a useless hint here.)
            if known.cas <= hint.cas:
                entries[key] = hint
            entries.move_to_end(key)

    def pop(self, key: str) -> Hint | None:
        with self._lock:
            return self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
