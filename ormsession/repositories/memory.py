"""An in-process store, for tests of the core and integrations and for single-process demos.

Not a substitute for a real store: data lives in one process and dies with it.
"""

from __future__ import annotations

import threading
from datetime import datetime

from ormsession.repositories.base import StoredSession

__all__ = ["AsyncMemoryRepository", "MemoryRepository"]


class MemoryRepository:
    """A dict guarded by a lock; expired records are dropped on read and by gc."""

    native_ttl = False

    def __init__(self) -> None:
        self._records: dict[str, StoredSession] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now: datetime) -> StoredSession | None:
        record = self._records.get(key)
        if record is not None and record.expires_at <= now:
            return None
        return record

    def read(self, key: str, now: datetime) -> StoredSession | None:
        with self._lock:
            return self._live(key, now)

    def create(self, key: str, record: StoredSession, now: datetime) -> bool:
        with self._lock:
            if self._live(key, now) is not None:
                return False
            self._records[key] = record
            return True

    def update(
        self, key: str, data: bytes, expires_at: datetime, expected_version: int, now: datetime
    ) -> int | None:
        with self._lock:
            record = self._live(key, now)
            if record is None or record.version != expected_version:
                return None
            version = expected_version + 1
            self._records[key] = record._replace(data=data, version=version, expires_at=expires_at)
            return version

    def touch(self, key: str, expires_at: datetime, now: datetime) -> bool:
        with self._lock:
            record = self._live(key, now)
            if record is None:
                return False
            self._records[key] = record._replace(expires_at=expires_at)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    def rename(self, old_key: str, new_key: str, expires_at: datetime, now: datetime) -> bool:
        with self._lock:
            record = self._live(old_key, now)
            if record is None:
                return False
            del self._records[old_key]
            self._records[new_key] = record._replace(expires_at=expires_at)
            return True

    def count(self, now: datetime) -> int:
        with self._lock:
            return sum(1 for record in self._records.values() if record.expires_at > now)

    def delete_expired(self, now: datetime, limit: int) -> int:
        with self._lock:
            expired = [k for k, r in self._records.items() if r.expires_at <= now][:limit]
            for key in expired:
                del self._records[key]
            return len(expired)

    def close(self) -> None:
        """Nothing to release."""


class AsyncMemoryRepository:
    """The asyncio twin: the same store, awaited (no real I/O, so no thread hops)."""

    native_ttl = False

    def __init__(self, inner: MemoryRepository | None = None) -> None:
        self.inner = inner or MemoryRepository()

    async def read(self, key: str, now: datetime) -> StoredSession | None:
        return self.inner.read(key, now)

    async def create(self, key: str, record: StoredSession, now: datetime) -> bool:
        return self.inner.create(key, record, now)

    async def update(
        self, key: str, data: bytes, expires_at: datetime, expected_version: int, now: datetime
    ) -> int | None:
        return self.inner.update(key, data, expires_at, expected_version, now)

    async def touch(self, key: str, expires_at: datetime, now: datetime) -> bool:
        return self.inner.touch(key, expires_at, now)

    async def delete(self, key: str) -> None:
        self.inner.delete(key)

    async def rename(self, old_key: str, new_key: str, expires_at: datetime, now: datetime) -> bool:
        return self.inner.rename(old_key, new_key, expires_at, now)

    async def count(self, now: datetime) -> int:
        return self.inner.count(now)

    async def delete_expired(self, now: datetime, limit: int) -> int:
        return self.inner.delete_expired(now, limit)

    async def close(self) -> None:
        self.inner.close()


def open_repository(url: str, settings: object) -> MemoryRepository:
    """``memory://``: a fresh in-process store."""
    return MemoryRepository()


def open_async_repository(url: str, settings: object) -> AsyncMemoryRepository:
    return AsyncMemoryRepository()
