"""The asyncio session manager: the same policy flows as the sync one, awaited."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from ormsession._manager_base import ManagerBase
from ormsession.errors import StoreError
from ormsession.policy import CompareAndSet, Flow
from ormsession.repositories.base import AsyncSessionRepository
from ormsession.session import RequestSession

__all__ = ["AsyncSessionManager"]

T = TypeVar("T")


class AsyncSessionManager(ManagerBase):
    """Loads and saves sessions on one asyncio repository; every method is awaited.

    The twin of :class:`~ormsession.SessionManager`: identical policy (it runs the same
    flows from :mod:`ormsession.policy`), only the I/O differs.
    """

    def __init__(
        self,
        repository: AsyncSessionRepository,
        *,
        owns_repository: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.repository = repository
        self._owns_repository = owns_repository

    async def open(self, session_id: str | None = None) -> RequestSession:
        """The session ``session_id`` names (the cookie's value), or a new one."""
        policy = self.policy
        now = policy.now_us()
        key = policy.key_to_read(session_id)
        if key is None:
            return policy.fresh(session_id, now)
        assert session_id is not None
        try:
            record = await self.repository.read(key, now)
        except StoreError as exc:
            return policy.unreadable(exc, session_id, now)
        return policy.opened(session_id, key, record, now)

    async def open_from_cookie_header(self, header: str | None) -> RequestSession:
        """Like :meth:`open`, reading the id out of a raw ``Cookie`` header."""
        return await self.open(self.session_id_from_cookie_header(header))

    async def save(self, session: RequestSession, *, https: bool = False) -> str | None:
        """Persist the request's changes; return a ``Set-Cookie`` value or None."""
        policy = self.policy
        answer = policy.save(session, https=https)
        if isinstance(answer, CompareAndSet):
            # Most writes: one compare-and-set, made without driving a flow.
            answer = policy.written(answer, await self.repository.update(*answer.args))
        if answer is None or isinstance(answer, str):
            return answer
        return await self._run(answer)  # a conflict, a create, a touch: the store first

    async def regenerate(self, session: RequestSession) -> None:
        """New id, same data, old id gone (call on login)."""
        await self._run(self.policy.regenerate(session))

    async def destroy(self, session: RequestSession) -> None:
        """Delete the session from the store now (call on logout)."""
        await self._run(self.policy.destroy(session))

    async def count(self) -> int:
        """How many live (unexpired) sessions the store holds."""
        return await self._run(self.policy.count())

    async def gc(
        self,
        *,
        batch_size: int | None = None,
        batch_seconds: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete expired sessions in batches; return how many (0 on TTL stores).
        The arguments are :meth:`SessionManager.gc`'s."""
        return await self._run(self._gc(batch_size, batch_seconds, progress))

    async def close(self) -> None:
        """Release the repository's resources (never an engine or client the app passed)."""
        if self._owns_repository:
            await self.repository.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self, flow: Flow[T]) -> T:
        """Answer a policy flow's store calls by awaiting this repository."""
        repository = self.repository
        try:
            call = next(flow)
            while True:
                try:
                    result = await getattr(repository, call.method)(*call.args)
                except Exception as exc:
                    call = flow.throw(exc)
                else:
                    call = flow.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
