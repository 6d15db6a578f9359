"""An in-process store, for tests of the core and integrations and for single-process demos.

Not a substitute for a real store: data lives in one process and dies with it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, NamedTuple

from ormsession.repositories.base import AsyncSessionRepository, SessionRepository, StoredSession

if TYPE_CHECKING:
    from ormsession.config import Config

__all__ = ["AsyncMemoryRepository", "MemoryRepository"]


class _Moved(NamedTuple):
    """A moved marker: the key's record was renamed to ``to`` (see the contract)."""

    to: str
    expires_us: int


class MemoryRepository(SessionRepository):
    """A dict guarded by a lock; expired records are dropped on read and by gc."""

    def __init__(self) -> None:
        self._records: dict[str, StoredSession | _Moved] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now_us: int) -> StoredSession | None:
        record = self._records.get(key)
        if isinstance(record, StoredSession) and record.expires_us > now_us:
            return record
        return None

    def read(self, key: str, now_us: int) -> StoredSession | None:
        with self._lock:
            return self._live(key, now_us)

    def create(self, key: str, record: StoredSession, now_us: int) -> bool:
        with self._lock:
            existing = self._records.get(key)
            if existing is not None and existing.expires_us > now_us:
                return False
            self._records[key] = record
            return True

    def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        with self._lock:
            record = self._live(key, now_us)
            if record is None or record.version != expected_version:
                return None
            version = expected_version + 1
            self._records[key] = record._replace(data=data, version=version, expires_us=expires_us)
            return version

    def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        with self._lock:
            record = self._live(key, now_us)
            if record is None:
                return False
            self._records[key] = record._replace(expires_us=expires_us)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            removed = self._records.pop(key, None)
            while isinstance(removed, _Moved):
                removed = self._records.pop(removed.to, None)

    def rename(self, old_key: str, new_key: str, expires_us: int, now_us: int) -> bool:
        with self._lock:
            record = self._live(old_key, now_us)
            if record is None:
                return False
            self._records[old_key] = _Moved(new_key, expires_us)
            self._records[new_key] = record._replace(expires_us=expires_us)
            return True

    def moved(self, key: str, now_us: int) -> bool:
        with self._lock:
            marker = self._records.get(key)
            return isinstance(marker, _Moved) and marker.expires_us > now_us

    def count(self, now_us: int) -> int:
        with self._lock:
            return sum(
                1
                for record in self._records.values()
                if isinstance(record, StoredSession) and record.expires_us > now_us
            )

    def delete_expired(self, now_us: int, limit: int) -> int:
        with self._lock:
            expired = [k for k, r in self._records.items() if r.expires_us <= now_us][:limit]
            for key in expired:
                del self._records[key]
            return len(expired)


class AsyncMemoryRepository(AsyncSessionRepository):
    """The asyncio twin: the same store, awaited (no real I/O, so no thread hops)."""

    def __init__(self, inner: MemoryRepository | None = None) -> None:
        self.inner = inner or MemoryRepository()

    async def read(self, key: str, now_us: int) -> StoredSession | None:
        return self.inner.read(key, now_us)

    async def create(self, key: str, record: StoredSession, now_us: int) -> bool:
        return self.inner.create(key, record, now_us)

    async def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        return self.inner.update(key, data, expires_us, expected_version, now_us)

    async def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        return self.inner.touch(key, expires_us, now_us)

    async def delete(self, key: str) -> None:
        self.inner.delete(key)

    async def rename(self, old_key: str, new_key: str, expires_us: int, now_us: int) -> bool:
        return self.inner.rename(old_key, new_key, expires_us, now_us)

    async def moved(self, key: str, now_us: int) -> bool:
        return self.inner.moved(key, now_us)

    async def count(self, now_us: int) -> int:
        return self.inner.count(now_us)

    async def delete_expired(self, now_us: int, limit: int) -> int:
        return self.inner.delete_expired(now_us, limit)


def open_store(url: str, config: Config, *, want_async: bool) -> Any:
    """``memory://``: a fresh in-process store."""
    return AsyncMemoryRepository() if want_async else MemoryRepository()
