"""The stored values a Redis repository last saw, per session key, for ``SET ... IFEQ``.

A native conditional SET (Valkey 8.1 and later) compares the whole stored value, so an
update can use it only when it knows the exact bytes it expects to replace: the value its
own read returned for that session (a request reads its session before it writes it), or
the value its own previous write stored. Nothing here is ever trusted: the server compares,
and a value that is stale, evicted or never seen only sends the update down the script
path. So the cache is small and bounded in entries and bytes, and evicts the oldest entry
first; a session larger than the byte budget is never kept.
"""

from __future__ import annotations

import threading

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_ENTRIES", "RecentValues"]

#: Enough for every request in flight in one process between its read and its write.
DEFAULT_MAX_ENTRIES = 4096
DEFAULT_MAX_BYTES = 8 * 1024 * 1024


class RecentValues:
    """A bounded map of session key -> the stored value last seen (thread-safe: a sync
    repository serves many threads)."""

    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._values: dict[str, bytes] = {}  # insertion order: the oldest first
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._values)

    @property
    def size(self) -> int:
        """The bytes held."""
        return self._bytes

    def get(self, key: str) -> bytes | None:
        return self._values.get(key)

    def put(self, key: str, value: bytes) -> None:
        with self._lock:
            self._drop(key)
            if len(value) > self.max_bytes:
                return
            self._values[key] = value
            self._bytes += len(value)
            while len(self._values) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._values)))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._bytes = 0

    def _drop(self, key: str) -> None:
        old = self._values.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
