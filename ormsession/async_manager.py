"""The asyncio session manager: the same policy flows as the sync one, awaited."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from ormsession.config import Config
from ormsession.cookies import CookieOptions
from ormsession.errors import ConfigurationError, StoreError
from ormsession.expiry import ExpiryPolicy, utcnow
from ormsession.flows import Flow, arun
from ormsession.gc import AsyncGcRunner, GcReport, async_gc_lock, count_expired
from ormsession.manager import ManagerBase
from ormsession.policy import Step, StoreCall
from ormsession.repositories.base import AsyncSessionRepository
from ormsession.session import RequestSession
from ormsession.users import UserSession

T = TypeVar("T")

logger = logging.getLogger("ormsession")

__all__ = ["AsyncSessionManager"]

#: The store calls that run to their end once started, even when the request's task is
#: cancelled (a client that went away, an app's timeout around its handler): a logout, a
#: revoke and a login's rename take several statements or commands on some stores (SQL,
#: Redis Cluster, Couchbase), and cut halfway they leave a logged-out user logged in, or a
#: renamed session under a marker with no copy. None of them is on a request's usual path
#: (read, update, touch, create), which pays for no task.
_FINISHED_WHEN_CANCELLED = frozenset({"delete", "rename", "revoke", "revoke_all"})


class AsyncSessionManager(ManagerBase):
    """Loads and saves sessions on one asyncio repository; every method is awaited.

    The twin of :class:`~ormsession.SessionManager`: identical policy (it runs the same
    flows from :mod:`ormsession.policy`), only the I/O differs.
    """

    def __init__(
        self,
        repository: AsyncSessionRepository,
        config: Config | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        session_class: type[RequestSession] = RequestSession,
        owns_repository: bool = True,
    ) -> None:
        super().__init__(repository, config, clock=clock, session_class=session_class)
        self.repository = repository
        self._owns_repository = owns_repository
        self._perform = self._performer()
        #: Store calls still running for a caller that was cancelled (see _finished).
        self._finishing: set[asyncio.Task[Any]] = set()
        #: The event loop the manager was made on (its store's connections belong to it).
        self._loop = _running_loop()

    async def open(
        self, session_id: str | None = None, *, expiry: ExpiryPolicy | None = None
    ) -> RequestSession:
        """The session ``session_id`` names (the cookie's value), or a new one.
        ``expiry``: this request's timeouts, instead of the config's."""
        return await self._run(self.policy.open(session_id, expiry=expiry))

    async def open_from_cookie_header(self, header: str | None) -> RequestSession:
        """Like :meth:`open`, reading the id out of a raw ``Cookie`` header (of several
        ids under the cookie's name, the first that names a stored session: see
        :meth:`open_first`)."""
        first = self.session_id_from_cookie_header(header)
        return await self.open_first(first, lambda: self._later_cookie_ids(header))

    async def open_first(
        self,
        session_id: str | None,
        later_ids: Callable[[], Sequence[str]],
        *,
        expiry: ExpiryPolicy | None = None,
    ) -> RequestSession:
        """:meth:`ormsession.SessionManager.open_first`, awaited."""
        session = await self.open(session_id, expiry=expiry)
        if session.id_unknown:
            for other in later_ids():
                candidate = await self.open(other, expiry=expiry)
                if not candidate.id_unknown:
                    return candidate
        return session

    async def save(
        self,
        session: RequestSession,
        *,
        https: bool = False,
        cookie: CookieOptions | None = None,
        expiry: ExpiryPolicy | None = None,
    ) -> str | None:
        """Persist the request's changes; return a ``Set-Cookie`` value or None.
        ``cookie`` and ``expiry``: this request's cookie options and timeouts."""
        flow = self.policy.save(session, https=https, cookie=cookie, expiry=expiry)
        return await self._run(flow)

    async def regenerate(
        self, session: RequestSession, *, expiry: ExpiryPolicy | None = None
    ) -> None:
        """New id, same data, old id gone (call on login); ``expiry``: this request's
        timeouts, as given to :meth:`save`."""
        await self._run(self.policy.regenerate(session, expiry=expiry))

    async def login(
        self,
        session: RequestSession,
        user_id: str | int,
        *,
        user_agent: str | None = None,
        ip: str | None = None,
        expiry: ExpiryPolicy | None = None,
    ) -> None:
        """:meth:`ormsession.SessionManager.login`, awaited."""
        flow = self.policy.login(session, user_id, user_agent=user_agent, ip=ip, expiry=expiry)
        await self._run(flow)

    async def sessions_of(
        self, user_id: str | int, *, current: RequestSession | None = None
    ) -> list[UserSession]:
        """:meth:`ormsession.SessionManager.sessions_of`, awaited."""
        return await self._run(self.policy.sessions_of(user_id, current=current))

    async def revoke(self, user_id: str | int, handle: str) -> bool:
        """:meth:`ormsession.SessionManager.revoke`, awaited."""
        return await self._run(self.policy.revoke(user_id, handle))

    async def revoke_all(self, user_id: str | int, *, keep: RequestSession | None = None) -> int:
        """:meth:`ormsession.SessionManager.revoke_all`, awaited."""
        return await self._run(self.policy.revoke_all(user_id, keep=keep))

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
        """Delete expired sessions in batches; return how many (0 on TTL stores, and 0 when
        another process holds the gc lock). The arguments are :meth:`SessionManager.gc`'s."""
        report = await self.run_gc(
            batch_size=batch_size, batch_seconds=batch_seconds, progress=progress
        )
        return report.removed

    async def run_gc(
        self,
        *,
        dry_run: bool = False,
        batch_size: int | None = None,
        batch_seconds: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> GcReport:
        """One coordinated gc run (see :meth:`SessionManager.run_gc`)."""
        if dry_run:
            counted = await _maybe_awaited(count_expired(self.repository, self.policy.now_us()))
            if counted is None:
                raise StoreError(
                    f"{type(self.repository).__qualname__} cannot count expired sessions"
                )
            return GcReport(int(counted), dry_run=True)
        async with async_gc_lock(self.repository) as held:
            if not held:
                return GcReport(0, lock_held_elsewhere=True)
            flow = self.policy.gc(
                batch_size=batch_size, batch_seconds=batch_seconds, progress=progress
            )
            return GcReport(await self._run(flow))

    def start_gc(
        self,
        every: float | str | timedelta,
        *,
        batch_size: int | None = None,
        batch_seconds: float | None = None,
    ) -> AsyncGcRunner:
        """Run :meth:`run_gc` every ``every`` (seconds, a timedelta, or a duration such as
        ``"10m"``) in an asyncio task of the running loop, until ``await runner.stop()`` or
        this manager's :meth:`close`."""
        options = {"batch_size": batch_size, "batch_seconds": batch_seconds}
        runner = AsyncGcRunner(self, every, options).start()
        self._gc_runners.append(runner)
        return runner

    async def close(self) -> None:
        """Release the repository's resources (never an engine or client the app passed);
        stop the gc runners this manager started. A logout, revoke or rename whose caller
        was cancelled finishes first (each within the store's deadline)."""
        for runner in self._gc_runners:
            await runner.stop()
        if self._finishing:
            await asyncio.wait(set(self._finishing))
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

    async def _run(self, flow: Flow[Step, T]) -> T:
        try:
            return await arun(flow, self._perform)
        except RuntimeError as exc:
            # asyncpg, asyncmy, aiomysql and redis-py's connections belong to the loop that
            # opened them, and fail on another with bare RuntimeErrors ("attached to a
            # different loop", "Event loop is closed").
            loop = _running_loop()
            if self._loop is None or loop is self._loop:
                raise
            raise ConfigurationError(
                "this asyncio session manager was made on another event loop than the one "
                "using it (a manager made with asyncio.run(configure_async(...)) at import, "
                "say), and its store's connections belong to that loop: make the manager "
                "inside the loop that serves requests, e.g. in the app's lifespan handler"
            ) from exc

    def _performer(self) -> Callable[[StoreCall], Awaitable[Any]]:
        # Chosen once, as in SessionManager: no metrics, no timing code on the way.
        if self.metrics is None:
            return self._call_store
        return self.metrics.timed_async(self._call_store)

    def _call_store(self, call: StoreCall) -> Awaitable[Any]:
        work: Awaitable[Any] = getattr(self.repository, call.method)(*call.args)
        if call.method in _FINISHED_WHEN_CANCELLED:
            return self._finished(work)
        return work

    async def _finished(self, work: Awaitable[Any]) -> Any:
        """``work`` in a task of its own, which a cancellation of the caller's task does not
        stop: the caller gets its CancelledError at once, the task ends within the store's
        deadline, and :meth:`close` waits for it."""
        task = asyncio.ensure_future(work)
        self._finishing.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._finishing.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_log_failure)  # nobody is left to raise it to
            raise


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("a session store call whose request was cancelled failed", exc_info=exc)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _maybe_awaited(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value
