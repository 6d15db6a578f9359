"""The asyncio repository's greenlet bridge: SQLAlchemy's ``greenlet_spawn`` on greenlets
kept for reuse, with the same results, errors, cancellations and context variables."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from sqlalchemy.util import await_only

from ormsession.repositories.sql import bridge

REQUEST = contextvars.ContextVar("request", default="none")


def _in_a_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    def run() -> None:
        asyncio.run(test())

    run.__name__ = test.__name__
    return run


def _idle() -> list[object]:
    return list(getattr(bridge._idle, "workers", []))


@_in_a_loop
async def test_a_call_returns_its_value_and_its_greenlet_serves_the_next() -> None:
    def work(a: int, b: int) -> int:
        return a + await_only(asyncio.sleep(0, result=b))

    assert await bridge.spawn(work, 2, 3) == 5
    kept = _idle()
    assert await bridge.spawn(work, 4, 5) == 9
    assert _idle() == kept and len(kept) >= 1  # the same greenlet, back in the idle list


@_in_a_loop
async def test_an_error_reaches_the_caller_and_the_greenlet_is_kept() -> None:
    failure = LookupError("no row")

    def work() -> None:
        await_only(asyncio.sleep(0))
        raise failure

    with pytest.raises(LookupError) as raised:
        await bridge.spawn(work)
    assert raised.value is failure
    assert await bridge.spawn(lambda: 7) == 7


@_in_a_loop
async def test_a_cancellation_is_thrown_in_where_the_call_waits() -> None:
    seen: list[str] = []
    started = asyncio.Event()

    def work() -> None:
        started.set()
        try:
            await_only(asyncio.sleep(10))
        except asyncio.CancelledError:
            seen.append("cancelled at the await")
            # What the repository does then: more awaits (a shielded invalidation).
            await_only(asyncio.sleep(0))
            seen.append("cleaned up")
            raise

    task = asyncio.create_task(bridge.spawn(work))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled at the await", "cleaned up"]
    assert await bridge.spawn(lambda: "next") == "next"


@_in_a_loop
async def test_a_timeout_around_the_call_ends_it_as_greenlet_spawn_would() -> None:
    def work() -> None:
        await_only(asyncio.sleep(10))

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await bridge.spawn(work)


@_in_a_loop
async def test_each_call_sees_its_own_tasks_context_variables() -> None:
    def work() -> str:
        before = REQUEST.get()
        await_only(asyncio.sleep(0.01))  # the other task runs meanwhile
        return before + "/" + REQUEST.get()

    async def request(name: str) -> str:
        REQUEST.set(name)
        return await bridge.spawn(work)

    assert await asyncio.gather(request("a"), request("b")) == ["a/a", "b/b"]


@_in_a_loop
async def test_calls_in_flight_at_once_each_get_a_greenlet() -> None:
    running: set[int] = set()
    most = 0

    def work(number: int) -> int:
        nonlocal most
        running.add(number)
        most = max(most, len(running))
        await_only(asyncio.sleep(0.01))
        running.discard(number)
        return number

    assert await asyncio.gather(*(bridge.spawn(work, n) for n in range(5))) == list(range(5))
    assert most == 5
    assert len(_idle()) <= bridge.KEPT


def test_a_worker_collected_while_suspended_ends() -> None:
    # A task abandoned mid-call leaves its greenlet suspended; when it is collected,
    # greenlet throws GreenletExit into it, and it must end there, not switch away.
    from greenlet import GreenletExit, getcurrent

    from ormsession.repositories.sql.bridge import _Worker

    def waits() -> int:
        getcurrent().parent.switch("an awaitable")  # what await_only hands out
        return 1

    worker = _Worker()
    worker.parent = getcurrent()
    assert worker.switch(waits, ()) == "an awaitable"
    assert isinstance(worker.throw(GreenletExit), GreenletExit)
    assert worker.dead
