"""SQLAlchemy's greenlet bridge (``greenlet_spawn``), with its greenlets kept for reuse.

The asyncio repository takes each connection from the engine's pool, which is SQLAlchemy's
and may need I/O to hand one out (connecting, pre-ping, the app's pool events): that must
run in a greenlet that ``await_only`` can leave to await the I/O. SQLAlchemy's
``greenlet_spawn`` starts a new greenlet for every call, and on CPython 3.11+ every new
greenlet gets a frame stack of its own: an ``mmap`` when it starts and an ``munmap`` when
it ends. In a process with other threads (aiosqlite's) an ``munmap`` also interrupts the
other CPUs, which a virtual machine makes dear: 30-40 µs a call measured in a Starlette
request on SQLite (docs/performance.md). :func:`spawn` does what ``greenlet_spawn`` does
on a greenlet that has run before: the same switches, the same errors thrown in at the
same place, the caller's context variables.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from greenlet import GreenletExit, getcurrent, greenlet  # type: ignore[import-untyped]

__all__ = ["spawn"]

T = TypeVar("T")

#: Idle greenlets kept per thread (a greenlet runs only in the thread that made it); more
#: than this many operations at once make greenlets that end after their call.
KEPT = 16


class _Done:
    """What a call ended with: its value, or the exception it raised."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any, error: BaseException | None) -> None:
        self.value, self.error = value, error


class _Worker(greenlet):  # type: ignore[misc]
    """A greenlet that runs one call after another; ``await_only`` accepts it as SQLAlchemy
    accepts its own (by this marker)."""

    __sqlalchemy_greenlet_provider__ = True

    def __init__(self) -> None:
        super().__init__(self._serve)

    def _serve(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        while True:
            try:
                done = _Done(fn(*args), None)
            except GreenletExit:
                # Collected while suspended (its task was abandoned mid-call): end, as a
                # greenlet of greenlet_spawn would, instead of switching to a parent
                # that is not waiting for it.
                raise
            except BaseException as exc:  # handed to the awaiting caller, raised there
                done = _Done(None, exc)
            fn, args = self.parent.switch(done)


_idle = threading.local()


async def spawn(fn: Callable[..., T], *args: Any) -> T:
    """``await greenlet_spawn(fn, *args)``, on a kept greenlet when one is idle."""
    idle: list[_Worker] | None = getattr(_idle, "workers", None)
    if idle is None:
        idle = _idle.workers = []
    worker = idle.pop() if idle else _Worker()
    current = getcurrent()
    worker.parent = current
    worker.gr_context = current.gr_context  # the awaiting task's context variables
    result = worker.switch(fn, args)
    while not isinstance(result, _Done):
        # ``fn`` awaits ``result`` (through await_only): await it here and hand back what
        # it gave, or throw in what it raised (a cancellation, a timeout) where it waits.
        try:
            value = await result
        except BaseException:
            result = worker.throw(*sys.exc_info())
        else:
            result = worker.switch(value)
    if len(idle) < KEPT:
        worker.gr_context = None  # an idle greenlet keeps no request's context alive
        idle.append(worker)
    if result.error is not None:
        error, result.error = result.error, None  # no cycle through the traceback
        raise error
    answer: T = result.value
    return answer
