"""Running sans-I/O flows: the one mechanism behind every rule written once for sync and async.

A *flow* is a generator that yields the I/O operations it needs and receives their results
(the pattern of httpx's auth flows). It does no I/O itself, so the same flow serves a
synchronous caller, through :func:`run`, and an asyncio one, through :func:`arun`; only the
``perform`` function differs. The session policy's operations are flows over repository
calls (:mod:`ormsession.policy`); inside a store, flows are used only where a protocol
takes several round trips (Couchbase's compare-and-set loops, the Redis Cluster rename).

An exception raised by ``perform`` is thrown into the flow at its ``yield``, so a flow can
catch it (to roll back, or to answer differently) or let it propagate to the caller. A
cancellation of :func:`arun`'s task is not: the flow is closed (``GeneratorExit`` at its
``yield``, so its ``finally`` and ``except BaseException`` clean-ups run, and it can ask
for nothing more), and the cancellation goes on.

One operation is the runners' own: a :class:`Pause` (a backoff between retries), which
:func:`run` answers with ``time.sleep`` and :func:`arun` with ``asyncio.sleep``, so a flow
can wait without knowing which it is under.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, NamedTuple, TypeVar, overload

__all__ = ["Flow", "Pause", "arun", "run"]

Op = TypeVar("Op")
T = TypeVar("T")

#: A flow that yields operations of type ``Op`` and returns a ``T``.
Flow = Generator[Op, Any, T]


class Pause(NamedTuple):
    """Wait ``seconds`` (answered with None by the runner, never passed to ``perform``)."""

    seconds: float


@overload
def run(flow: Generator[Op, Any, T], perform: Callable[[Op], Any]) -> T: ...
@overload
def run(flow: Generator[Op | Pause, Any, T], perform: Callable[[Op], Any]) -> T: ...
def run(flow: Generator[Any, Any, T], perform: Callable[[Any], Any]) -> T:
    """Drive ``flow`` to its end, answering each operation with ``perform(operation)``."""
    try:
        operation = next(flow)
        while True:
            try:
                if isinstance(operation, Pause):
                    time.sleep(operation.seconds)
                    result = None
                else:
                    result = perform(operation)
            except Exception as exc:
                operation = flow.throw(exc)
            else:
                operation = flow.send(result)
    except StopIteration as done:
        value: T = done.value
        return value


@overload
async def arun(flow: Generator[Op, Any, T], perform: Callable[[Op], Awaitable[Any]]) -> T: ...
@overload
async def arun(
    flow: Generator[Op | Pause, Any, T], perform: Callable[[Op], Awaitable[Any]]
) -> T: ...
async def arun(flow: Generator[Any, Any, T], perform: Callable[[Any], Awaitable[Any]]) -> T:
    """:func:`run` for asyncio: each operation is answered with ``await perform(operation)``."""
    try:
        operation = next(flow)
        while True:
            try:
                if isinstance(operation, Pause):
                    await asyncio.sleep(operation.seconds)
                    result = None
                else:
                    result = await perform(operation)
            except Exception as exc:
                operation = flow.throw(exc)
            except BaseException:
                # A cancellation: the flow's own clean-up (a login unbinding its session)
                # runs now, not whenever the garbage collector closes the abandoned flow.
                flow.close()
                raise
            else:
                operation = flow.send(result)
    except StopIteration as done:
        value: T = done.value
        return value
