"""A blocking view of an asyncio repository, so one test body checks both twins."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ormsession.repositories.base import (
    AsyncSessionRepository,
    OwnedSession,
    Owner,
    SessionRepository,
    StoredSession,
)

__all__ = ["BlockingRepository"]


class BlockingRepository(SessionRepository):
    """Drives an :class:`AsyncSessionRepository` from synchronous code: each call runs the
    coroutine to completion on ``runner``, one :class:`asyncio.Runner` for the repository's
    whole life (an async client's connections belong to the loop that opened them).

    It neither starts nor closes ``inner``: whoever made the runner does both on it.
    """

    def __init__(self, inner: AsyncSessionRepository, runner: asyncio.Runner) -> None:
        self.inner = inner
        self.runner = runner
        # The wrapped store's answer, not this class's default (the gc test reads it).
        self.native_ttl = inner.native_ttl  # type: ignore[misc]

    def read(self, key: str, now_us: int) -> StoredSession | None:
        return self.runner.run(self.inner.read(key, now_us))

    def create(
        self, key: str, record: StoredSession, now_us: int, owner_until_us: int | None = None
    ) -> bool:
        return self.runner.run(self.inner.create(key, record, now_us, owner_until_us))

    def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        return self.runner.run(self.inner.update(key, data, expires_us, expected_version, now_us))

    def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        return self.runner.run(self.inner.touch(key, expires_us, now_us))

    def delete(self, key: str) -> None:
        self.runner.run(self.inner.delete(key))

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
        renaming = self.inner.rename(
            old_key, new_key, expires_us, now_us, owner, owner_until_us, data, expected_version
        )
        return self.runner.run(renaming)

    def moved(self, key: str, now_us: int) -> bool:
        return self.runner.run(self.inner.moved(key, now_us))

    def count(self, now_us: int) -> int:
        return self.runner.run(self.inner.count(now_us))

    def delete_expired(self, now_us: int, limit: int) -> int:
        return self.runner.run(self.inner.delete_expired(now_us, limit))

    def sessions_of(self, user_id: str, now_us: int) -> list[OwnedSession]:
        return self.runner.run(self.inner.sessions_of(user_id, now_us))

    def revoke(self, user_id: str, handle: str, now_us: int) -> bool:
        return self.runner.run(self.inner.revoke(user_id, handle, now_us))

    def revoke_all(self, user_id: str, keep_key: str | None, now_us: int) -> int:
        return self.runner.run(self.inner.revoke_all(user_id, keep_key, now_us))

    def close(self) -> None:
        # Closing is the runner owner's job (see the class docstring); a manager handed
        # this view must not close the store under the suite's feet.
        return None

    def gather(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Call ``inner.<method>(*args)`` for each ``(method, args)`` in ``calls`` as
        concurrent tasks (``asyncio.gather``) and return their results in order."""

        async def all_at_once() -> list[Any]:
            calling = (getattr(self.inner, method)(*args) for method, args in calls)
            return list(await asyncio.gather(*calling))

        return self.runner.run(all_at_once())
