"""One session manager per running event loop, for ASGI apps served without lifespan.

asyncpg, asyncmy and redis.asyncio connections belong to the event loop that opened them,
and aiosqlite connections left open when a loop ends leak a thread and a ResourceWarning.
An app served with lifespan events has one loop and one manager, built at startup and
closed at shutdown. Without lifespan (Starlette's ``TestClient`` used without ``with``
runs every request on a new loop; ``httpx.ASGITransport``; a server started with
``--lifespan off``) there is no shutdown to close anything on, so each loop gets its own
manager, built on that loop's first request, and a guardian task that closes it when the
loop shuts down: ``asyncio.run``, ``asyncio.Runner`` and anyio cancel the tasks still
pending before they close a loop, which runs the guardian's ``finally`` while the loop can
still await the store's goodbyes.

A store that holds no connection (``memory://``) is shared by every loop instead: a
manager per loop would give each loop its own, empty, store.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Awaitable, Callable

from ormsession.async_manager import AsyncSessionManager
from ormsession.config import Config
from ormsession.repositories.memory import AsyncMemoryRepository

__all__ = ["LoopManagers", "close_quietly", "config_for_later_loops", "is_loop_bound"]

logger = logging.getLogger("ormsession")

ManagerFactory = Callable[[], Awaitable[AsyncSessionManager]]


def is_loop_bound(manager: AsyncSessionManager) -> bool:
    """Whether the manager's store keeps connections tied to the loop that opened them."""
    return not isinstance(manager.repository, AsyncMemoryRepository)


async def close_quietly(manager: AsyncSessionManager) -> None:
    """Close ``manager``; a failure is logged, never raised (the loop is shutting down, or
    a request is done: nobody could act on it)."""
    try:
        await manager.close()
    except Exception:
        logger.exception("closing the session store failed")


def config_for_later_loops(config: Config) -> Config:
    """The configuration the managers of later event loops are built with, once a first
    manager was built with ``config``: the schema was checked (or migrated) then; later
    loops use the same database and skip that (measured: a third to a half of a request's
    time in a test client that runs each request on a new loop). A private database
    (in-memory SQLite) is new for every manager, so it keeps its checks."""
    checks = config.schema_check or config.auto_migrate is not False
    if checks and not _private_database(config):
        return config.replace(schema_check=False, auto_migrate=False)
    return config


def _private_database(config: Config) -> bool:
    """Whether each manager built from ``config`` gets a database of its own (in-memory
    SQLite), which must then be created each time."""
    url = config.url.get_secret_value()
    if not url.startswith("sqlite"):
        return False
    from sqlalchemy.engine import make_url

    from ormsession.repositories.sql.clients import is_in_memory

    return is_in_memory(make_url(url))


class _Entry:
    """One loop's manager: ``ready`` resolves to it once built; ``guardian`` owns it."""

    __slots__ = ("guardian", "ready")

    def __init__(self, ready: asyncio.Future[AsyncSessionManager]) -> None:
        self.ready = ready
        self.guardian: asyncio.Task[None] | None = None


class LoopManagers:
    """The managers ``build`` makes, one per running event loop (or one shared, for a
    store without connections); each closed by its loop's guardian, or by :meth:`aclose`
    on its own loop."""

    def __init__(self, build: ManagerFactory) -> None:
        self._build = build
        # Each guardian removes its loop's entry. A loop closed without cancelling its
        # tasks first (``loop.close()`` by hand) never runs its guardian: such entries are
        # dropped when the next loop arrives, so they cannot pile up.
        self._entries: dict[asyncio.AbstractEventLoop, _Entry] = {}
        self._shared: AsyncSessionManager | None = None
        # Loops run in different threads (one per TestClient request): guard the table.
        # Reentrant: the garbage collector may finalize an abandoned guardian (whose
        # ``finally`` forgets its entry) while this thread holds the lock.
        self._lock = threading.RLock()

    async def get(self) -> AsyncSessionManager:
        """The manager for the running loop, built on its first request (once, even under
        concurrent first requests)."""
        if self._shared is not None:
            return self._shared
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._entries.get(loop)
            if entry is None:
                for closed in [other for other in self._entries if other.is_closed()]:
                    self._entries.pop(closed, None)
                entry = self._entries[loop] = _Entry(loop.create_future())
                # An empty context: the first request's context variables (a request id
                # in the logs, ...) must not live on in a task that lasts as long as the loop.
                guard = self._guard(loop, entry)
                entry.guardian = loop.create_task(guard, context=contextvars.Context())
        # Shielded: a cancelled request must not cancel the build the others wait for.
        return await asyncio.shield(entry.ready)

    async def _guard(self, loop: asyncio.AbstractEventLoop, entry: _Entry) -> None:
        try:
            manager = await self._build()
        except asyncio.CancelledError:  # the loop shut down while the store was starting
            self._forget(loop, entry)
            entry.ready.cancel()
            raise
        except Exception as exc:  # the waiting requests fail; the next one tries again
            self._forget(loop, entry)
            entry.ready.set_exception(exc)
            return
        if not is_loop_bound(manager):
            entry.ready.set_result(self._share(manager))
            self._forget(loop, entry)
            if self._shared is not manager:
                await close_quietly(manager)  # another loop's won the race
            return
        entry.ready.set_result(manager)
        try:
            await loop.create_future()  # pending until the loop's shutdown cancels it
        finally:
            self._forget(loop, entry)
            # A loop closed by hand with this task still pending cannot run the close:
            # the garbage collector is ending the task, there is no loop to await on.
            if not loop.is_closed():
                await close_quietly(manager)

    def _share(self, manager: AsyncSessionManager) -> AsyncSessionManager:
        with self._lock:
            if self._shared is None:
                self._shared = manager
            return self._shared

    def _forget(self, loop: asyncio.AbstractEventLoop, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get(loop) is entry:
                self._entries.pop(loop, None)

    async def aclose(self) -> None:
        """Close the running loop's manager and the shared one (other loops' managers
        can only be closed on their own loops: their guardians do it)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._entries.pop(loop, None)
            shared, self._shared = self._shared, None
        if entry is not None and entry.guardian is not None:
            entry.guardian.cancel()
            await asyncio.wait([entry.guardian])
        if shared is not None:
            await close_quietly(shared)
