"""The connection pools of the engines ormsession creates: SQLAlchemy's ``QueuePool`` and
``AsyncAdaptedQueuePool``, with a fair queue of idle connections.

SQLAlchemy's queues let a worker that returns a connection and asks again at once take it
back ahead of the workers already waiting, and a waiter that loses such a race goes to the
back of the line (``threading.Condition`` and ``asyncio.Queue`` both behave so). Under a
steady load of more workers than connections, some waiters then wait for seconds while
others never do: with the default 15 connections, 64 asyncio workers doing 400 operations
each on MariaDB saw waits up to the 5 s timeout, and 17 of 25,600 operations failed.
Here a returned connection goes straight to the longest-waiting worker, so waits stay
about as long as the queue ahead (see docs/reliability.md).

The synchronous queue also waits only until the running operation's deadline
(:mod:`.deadlines`), whatever the pool's own ``timeout``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any, Generic, TypeVar

from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool
from sqlalchemy.util import await_only
from sqlalchemy.util.queue import Empty, Full, QueueCommon

from ormsession.repositories.sql.deadlines import current_deadline

__all__ = ["AsyncSessionQueuePool", "SessionQueuePool"]

T = TypeVar("T")
_NOTHING: Any = object()


class _Waiter:
    """A thread waiting for a connection: it blocks on ``lock`` (held from the start)
    until a returning connection is handed to it."""

    __slots__ = ("gave_up", "item", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.item: Any = _NOTHING
        self.gave_up = False


class _FairQueue(QueueCommon[T], Generic[T]):
    """Idle connections, handed to waiting threads first come, first served."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        self.maxsize = maxsize
        self.use_lifo = use_lifo
        self._items: deque[T] = deque()
        self._waiters: deque[_Waiter] = deque()
        self._lock = threading.Lock()

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: T) -> None:
        self.put(item, False)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.gave_up:
                    waiter.item = item
                    waiter.lock.release()
                    return
            if self.full():
                raise Full
            self._items.append(item)

    def get_nowait(self) -> T:
        return self.get(False)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        with self._lock:
            if self._items:
                return self._items.pop() if self.use_lifo else self._items.popleft()
            if not block:
                raise Empty
            waiter = _Waiter()
            self._waiters.append(waiter)
        deadline = current_deadline()
        if deadline is not None:
            left = max(deadline - time.monotonic(), 0.0)
            timeout = left if timeout is None else min(timeout, left)
        if waiter.lock.acquire(timeout=-1 if timeout is None else timeout):
            return waiter.item  # type: ignore[no-any-return]
        with self._lock:
            if waiter.item is not _NOTHING:  # handed over as the wait timed out
                return waiter.item  # type: ignore[no-any-return]
            waiter.gave_up = True
        raise Empty


class _FairAsyncQueue(QueueCommon[T], Generic[T]):
    """Idle connections, handed to waiting tasks first come, first served (used from
    SQLAlchemy's greenlets, on the event loop's thread)."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        self.maxsize = maxsize
        self.use_lifo = use_lifo
        self._items: deque[T] = deque()
        self._waiters: deque[asyncio.Future[T]] = deque()

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: T) -> None:
        self.put(item, False)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        if self.full():
            raise Full
        self._items.append(item)

    def get_nowait(self) -> T:
        return self.get(False)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        if self._items:
            return self._items.pop() if self.use_lifo else self._items.popleft()
        if not block:
            raise Empty
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await_only(self._wait(waiter, timeout))
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # Handed a connection just as the wait ended: pass it on, not lose it.
                self.put(waiter.result())
            if isinstance(exc, TimeoutError):
                raise Empty from exc
            raise

    @staticmethod
    async def _wait(waiter: asyncio.Future[T], timeout: float | None) -> T:
        if timeout is None:
            return await waiter
        # A timeout cancels the waiter itself, so put() passes it over; a connection
        # handed over just before is given back by get().
        async with asyncio.timeout(timeout):
            return await waiter


class SessionQueuePool(QueuePool):
    """``QueuePool`` with a fair queue that waits no longer than the operation."""

    _queue_class = _FairQueue  # type: ignore[assignment]


class AsyncSessionQueuePool(AsyncAdaptedQueuePool):
    """``AsyncAdaptedQueuePool`` with a fair queue (the repository's ``asyncio.timeout``
    around each operation ends its waits sooner than the pool's own timeout)."""

    _queue_class = _FairAsyncQueue  # type: ignore[assignment]
