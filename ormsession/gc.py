"""Coordinated gc: one process at a time deletes expired sessions, from cron or a runner.

A gc *run* tries its store's gc lock, and only the holder deletes: every node of a site can
run ``ormsession gc`` from cron, or start a background runner
(:meth:`SessionManager.start_gc <ormsession.SessionManager.start_gc>`), and the others skip
the pass. Each run is the policy's batched delete (:meth:`ormsession.policy.SessionPolicy.gc`:
one short, index-backed statement per batch, sized to the batch time budget).

Where the lock lives is the store's business, through one optional repository method,
``gc_lock()``, a context manager (async: an async one) that yields whether this process
holds the lock now. The SQL stores have it (:mod:`ormsession.repositories.sql.gc_lock`).
Stores whose records expire by themselves (``native_ttl``: Redis, Couchbase) need none:
their gc deletes nothing. Any other store without one (the memory store, a third-party
store) gets a lock in this process only.
"""

from __future__ import annotations

import asyncio
import logging
import math
import numbers
import threading
import weakref
from collections.abc import Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    contextmanager,
    nullcontext,
)
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from ormsession.repositories.base import AsyncSessionRepository, SessionRepository

if TYPE_CHECKING:
    from ormsession.async_manager import AsyncSessionManager
    from ormsession.manager import SessionManager

M = TypeVar("M")

__all__ = ["AsyncGcRunner", "GcReport", "GcRunner", "async_gc_lock", "gc_lock"]

logger = logging.getLogger("ormsession")


class GcReport(NamedTuple):
    """What one gc run did."""

    #: Expired sessions (and moved markers) deleted; on a dry run, how many would be.
    removed: int
    #: Another process held the gc lock: this run deleted nothing (``removed`` is 0).
    lock_held_elsewhere: bool = False
    #: Counted only, nothing deleted.
    dry_run: bool = False


def gc_lock(repository: SessionRepository) -> AbstractContextManager[bool]:
    """The store's gc lock (see the module docstring); yields whether it is held here."""
    store_lock = getattr(repository, "gc_lock", None)
    if store_lock is not None:
        lock: AbstractContextManager[bool] = store_lock()
        return lock
    if repository.native_ttl:
        return nullcontext(True)
    return held_in_process(repository)


def async_gc_lock(repository: AsyncSessionRepository) -> AbstractAsyncContextManager[bool]:
    """:func:`gc_lock` of an asyncio repository."""
    store_lock = getattr(repository, "gc_lock", None)
    if store_lock is not None:
        lock: AbstractAsyncContextManager[bool] = store_lock()
        return lock
    if repository.native_ttl:
        return nullcontext(True)
    return _AsyncOf(held_in_process(repository))


_process_locks: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_process_locks_guard = threading.Lock()


def held_in_process(owner: Any) -> AbstractContextManager[bool]:
    """A gc lock within this process only, for a store private to it (an in-memory
    database) or one without a lock of its own; keyed by ``owner``, weakly."""
    with _process_locks_guard:
        lock = _process_locks.get(owner)
        if lock is None:
            lock = _process_locks[owner] = threading.Lock()
    return tried_without_waiting(lock)


@contextmanager
def tried_without_waiting(lock: threading.Lock) -> Iterator[bool]:
    """Yield whether ``lock`` was free (and is now held, until the block ends)."""
    acquired = lock.acquire(blocking=False)
    try:
        yield acquired
    finally:
        if acquired:
            lock.release()


class _AsyncOf:
    """A sync context manager that never blocks, used as an async one."""

    def __init__(self, inner: AbstractContextManager[bool]) -> None:
        self._inner = inner

    async def __aenter__(self) -> bool:
        return self._inner.__enter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        self._inner.__exit__(*exc_info)


def count_expired(repository: Any, now_us: int) -> Any:
    """How many records a gc would delete: the store's ``count_expired`` (SQL: an index
    range count); 0 on a TTL store; None when a store cannot tell. (Awaitable on asyncio.)"""
    counter = getattr(repository, "count_expired", None)
    if counter is not None:
        return counter(now_us)
    return 0 if repository.native_ttl else None


# -- background runners --------------------------------------------------------------------------
class _Rounds(Generic[M]):
    """What both runners keep: the manager, the interval, the last report and the count."""

    def __init__(
        self, manager: M, every: float | str | timedelta, options: dict[str, Any] | None
    ) -> None:
        self.every = gc_interval(every)
        self.last: GcReport | None = None
        self.runs = 0
        self._manager = manager
        self._options = options or {}


class GcRunner(_Rounds["SessionManager"]):
    """Runs a coordinated gc every ``every`` seconds in a daemon thread, until :meth:`stop`.

    Built by :meth:`SessionManager.start_gc <ormsession.SessionManager.start_gc>`. The first
    run starts at once; a run that fails is logged (``ormsession`` logger, warning) and the
    next one tries again. ``last`` is the last run's :class:`GcReport`, ``runs`` how many
    ended (failed ones included).
    """

    def __init__(
        self,
        manager: SessionManager,
        every: float | str | timedelta,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(manager, every, options)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ormsession-gc", daemon=True)

    def start(self) -> GcRunner:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the run in progress, if any (waiting up to ``timeout`` seconds)."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.last = self._manager.run_gc(**self._options)
            except Exception as exc:  # a store outage must not end the runner
                logger.warning("gc run failed: %s", exc)
            self.runs += 1
            self._stopping.wait(self.every)

    def __enter__(self) -> GcRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class AsyncGcRunner(_Rounds["AsyncSessionManager"]):
    """:class:`GcRunner` as an asyncio task (built by ``AsyncSessionManager.start_gc``,
    which needs a running event loop); ``await runner.stop()`` ends it."""

    def __init__(
        self,
        manager: AsyncSessionManager,
        every: float | str | timedelta,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(manager, every, options)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> AsyncGcRunner:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # asyncio's own "no running event loop" does not say what to do instead.
            raise RuntimeError(
                "the asyncio manager's start_gc() runs its rounds as a task of the running "
                "event loop: call it from inside the loop (e.g. in a lifespan start-up "
                "handler), or use a synchronous manager's start_gc(), which runs a thread"
            ) from None
        self._task = loop.create_task(self._loop(), name="ormsession-gc")
        return self

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Cancel the task (a run in progress is cancelled: its batch statements are short,
        and what it deleted stays deleted) and wait for it to end."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():  # the caller's own cancellation
                raise

    async def _loop(self) -> None:
        while True:
            try:
                self.last = await self._manager.run_gc(**self._options)
            except Exception as exc:
                logger.warning("gc run failed: %s", exc)
            self.runs += 1
            await asyncio.sleep(self.every)

    async def __aenter__(self) -> AsyncGcRunner:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def gc_interval(every: object) -> float:
    """``every`` in seconds: a number of seconds, a timedelta, or a duration as the options
    take one (``"600"``, ``"10m"``, ``"1h"``)."""
    from ormsession.config import parse_duration
    from ormsession.errors import ConfigurationError

    seconds: object = every
    if isinstance(every, str):
        seconds = parse_duration(every)
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    if isinstance(seconds, numbers.Real) and not isinstance(seconds, bool):
        try:
            value = float(seconds)
        except OverflowError:
            value = math.inf
        # The runner waits on a threading.Event, which refuses longer timeouts.
        if 0 < value <= threading.TIMEOUT_MAX:
            return value
    raise ConfigurationError(
        f"the gc interval must be seconds > 0, a timedelta or a duration such as '10m', "
        f"not {every!r}"
    )
