"""An in-process store, for tests of the core and integrations and for single-process demos.

Not a substitute for a real store: data lives in one process and dies with it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, NamedTuple

from ormsession.repositories.base import (
    AsyncSessionRepository,
    OwnedSession,
    Owner,
    SessionRepository,
    StoredSession,
    marker_answers,
)

if TYPE_CHECKING:
    from ormsession.config import Config

__all__ = ["AsyncMemoryRepository", "MemoryRepository"]


class _Moved(NamedTuple):
    """A moved marker: the key's record was renamed to ``to`` (see the contract)."""

    to: str
    expires_us: int
    #: When the rename happened (``moved`` answers for :data:`REPLACED_ID_GRACE_US`).
    renamed_us: int


class MemoryRepository(SessionRepository):
    """A dict guarded by a lock; expired records are dropped on read and by gc. The user
    index is a dict of key sets, pruned of what is gone as it is read."""

    store_kind = "memory"

    def __init__(self) -> None:
        self._records: dict[str, StoredSession | _Moved] = {}
        self._seen: dict[str, int] = {}
        self._users: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now_us: int) -> StoredSession | None:
        record = self._records.get(key)
        if isinstance(record, StoredSession) and record.expires_us > now_us:
            return record
        return None

    def _put(self, key: str, record: StoredSession, now_us: int) -> None:
        self._records[key] = record
        self._seen[key] = now_us
        if record.owner is not None:
            self._users.setdefault(record.owner.user_id, set()).add(key)

    def _pop(self, key: str) -> StoredSession | _Moved | None:
        self._seen.pop(key, None)
        return self._records.pop(key, None)

    def read(self, key: str, now_us: int) -> StoredSession | None:
        with self._lock:
            return self._live(key, now_us)

    def create(
        self, key: str, record: StoredSession, now_us: int, owner_until_us: int | None = None
    ) -> bool:
        with self._lock:
            existing = self._records.get(key)
            if existing is not None and existing.expires_us > now_us:
                return False
            self._put(key, record, now_us)
            return True

    def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        with self._lock:
            record = self._live(key, now_us)
            if record is None or record.version != expected_version:
                return None
            version = expected_version + 1
            changed = record._replace(data=data, version=version, expires_us=expires_us)
            self._put(key, changed, now_us)
            return version

    def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        with self._lock:
            record = self._live(key, now_us)
            if record is None:
                return False
            self._put(key, record._replace(expires_us=expires_us), now_us)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._delete(key)

    def _delete(self, key: str) -> None:
        removed = self._pop(key)
        while isinstance(removed, _Moved):
            removed = self._pop(removed.to)

    def rename(
        self,
        old_key: str,
        new_key: str,
        expires_us: int,
        now_us: int,
        owner: Owner | None = None,
        owner_until_us: int | None = None,
        data: bytes | None = None,
        expected_version: int | None = None,
    ) -> bool:
        with self._lock:
            record = self._live(old_key, now_us)
            if record is None:
                return False
            if data is not None:
                if record.version != expected_version:
                    return False
                record = record._replace(data=data)
            self._pop(old_key)
            self._records[old_key] = _Moved(new_key, expires_us, now_us)
            moved = record._replace(expires_us=expires_us, owner=owner or record.owner)
            self._put(new_key, moved, now_us)
            return True

    def moved(self, key: str, now_us: int) -> bool:
        with self._lock:
            marker = self._records.get(key)
            return isinstance(marker, _Moved) and marker_answers(
                marker.expires_us, marker.renamed_us, now_us
            )

    def count(self, now_us: int) -> int:
        with self._lock:
            return sum(
                1
                for record in self._records.values()
                if isinstance(record, StoredSession) and record.expires_us > now_us
            )

    def count_expired(self, now_us: int) -> int:
        """How many records gc would delete (beyond the contract, as the SQL store's)."""
        with self._lock:
            return sum(1 for record in self._records.values() if record.expires_us <= now_us)

    def delete_expired(self, now_us: int, limit: int) -> int:
        with self._lock:
            expired = [k for k, r in self._records.items() if r.expires_us <= now_us][:limit]
            for key in expired:
                self._pop(key)
            return len(expired)

    def _owned(self, user_id: str, now_us: int) -> list[tuple[str, StoredSession]]:
        """The user's live sessions; index entries of anything else are pruned."""
        keys = self._users.get(user_id, set())
        owned = []
        for key in list(keys):
            record = self._live(key, now_us)
            if record is None or record.owner is None or record.owner.user_id != user_id:
                keys.discard(key)
            else:
                owned.append((key, record))
        if not keys:
            self._users.pop(user_id, None)
        return owned

    def sessions_of(self, user_id: str, now_us: int) -> list[OwnedSession]:
        with self._lock:
            return [
                OwnedSession(key, r.owner, r.created_us, self._seen[key], r.expires_us)
                for key, r in self._owned(user_id, now_us)
                if r.owner is not None
            ]

    def revoke(self, user_id: str, handle: str, now_us: int) -> bool:
        with self._lock:
            owned = self._owned(user_id, now_us)
            ended = [key for key, r in owned if r.owner is not None and r.owner.handle == handle]
            for key in ended:
                self._delete(key)
            return bool(ended)

    def revoke_all(self, user_id: str, keep_key: str | None, now_us: int) -> int:
        with self._lock:
            ended = [key for key, _ in self._owned(user_id, now_us) if key != keep_key]
            for key in ended:
                self._delete(key)
            return len(ended)


class AsyncMemoryRepository(AsyncSessionRepository):
    """The asyncio twin: the same store, awaited (no real I/O, so no thread hops)."""

    store_kind = "memory"

    def __init__(self, inner: MemoryRepository | None = None) -> None:
        self.inner = inner or MemoryRepository()

    async def read(self, key: str, now_us: int) -> StoredSession | None:
        return self.inner.read(key, now_us)

    async def create(
        self, key: str, record: StoredSession, now_us: int, owner_until_us: int | None = None
    ) -> bool:
        return self.inner.create(key, record, now_us, owner_until_us)

    async def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        return self.inner.update(key, data, expires_us, expected_version, now_us)

    async def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        return self.inner.touch(key, expires_us, now_us)

    async def delete(self, key: str) -> None:
        self.inner.delete(key)

    async def rename(
        self,
        old_key: str,
        new_key: str,
        expires_us: int,
        now_us: int,
        owner: Owner | None = None,
        owner_until_us: int | None = None,
        data: bytes | None = None,
        expected_version: int | None = None,
    ) -> bool:
        return self.inner.rename(
            old_key, new_key, expires_us, now_us, owner, owner_until_us, data, expected_version
        )

    async def moved(self, key: str, now_us: int) -> bool:
        return self.inner.moved(key, now_us)

    async def count(self, now_us: int) -> int:
        return self.inner.count(now_us)

    async def count_expired(self, now_us: int) -> int:
        return self.inner.count_expired(now_us)

    async def delete_expired(self, now_us: int, limit: int) -> int:
        return self.inner.delete_expired(now_us, limit)

    async def sessions_of(self, user_id: str, now_us: int) -> list[OwnedSession]:
        return self.inner.sessions_of(user_id, now_us)

    async def revoke(self, user_id: str, handle: str, now_us: int) -> bool:
        return self.inner.revoke(user_id, handle, now_us)

    async def revoke_all(self, user_id: str, keep_key: str | None, now_us: int) -> int:
        return self.inner.revoke_all(user_id, keep_key, now_us)


def open_store(url: str, config: Config, *, want_async: bool) -> Any:
    """``memory://``: a fresh in-process store."""
    return AsyncMemoryRepository() if want_async else MemoryRepository()
