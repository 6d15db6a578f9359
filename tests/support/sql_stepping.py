"""Stepping the SQL store's multi-statement flows (:mod:`ormsession.repositories.sql.moves`)
by hand, one statement at a time, through every interleaving of a few of them."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from sqlalchemy import select

from ormsession.expiry import now_us
from ormsession.repositories.sql.repository import SqlRepository
from ormsession.repositories.sql.statements import Query

__all__ = [
    "Flow",
    "Run",
    "Stepper",
    "every_interleaving",
    "nothing_to_check",
    "one_statement",
    "rows",
    "unreadable",
]

Flow = Generator[Query[Any], Any, Any]


def rows(repository: SqlRepository, *keys: str) -> dict[str, dict[str, Any]]:
    """The raw rows under ``keys``, read past the repository."""
    table = repository.table
    with repository.engine.connect() as connection:
        found = connection.execute(select(table).where(table.c.session_key.in_(keys)))
        return {row.session_key: dict(row._mapping) for row in found}


class Stepper:
    """One flow, advanced one statement at a time; ``finished()`` runs when it returns."""

    def __init__(
        self, flow: Flow, perform: Callable[[Query[Any]], Any], finished: Callable[[], None]
    ) -> None:
        self._flow, self._perform, self._finished = flow, perform, finished
        self._next: Query[Any] | None = next(flow)
        self.result: Any = None

    @property
    def done(self) -> bool:
        return self._next is None

    def step(self) -> None:
        assert self._next is not None
        try:
            self._next = self._flow.send(self._perform(self._next))
        except StopIteration as finished:
            self._next, self.result = None, finished.value
            self._finished()


def one_statement(query: Query[Any]) -> Flow:
    return (yield query)


def nothing_to_check() -> None:
    return None


def unreadable(repository: SqlRepository, *keys: str) -> Callable[[], None]:
    """A check that no session is readable under ``keys``."""

    def check() -> None:
        for key in keys:
            assert repository.read(key, now_us()) is None, "readable after the delete returned"

    return check


#: The flows of one run, each with what must hold the moment it returns, and the check of
#: the run's results once all have.
Run = tuple[list[tuple[Flow, Callable[[], None]]], Callable[[list[Any]], None]]


def every_interleaving(repository: SqlRepository, start: Callable[[], Run]) -> int:
    """Run the flows ``start()`` sets up (on fresh keys) in every order of their statements,
    checking each run as it says; how many orders there were."""
    todo: list[tuple[int, ...]] = [()]
    runs = 0
    while todo:
        prefix = todo.pop()
        flows, check = start()
        steppers = [Stepper(flow, repository._execute, done) for flow, done in flows]
        schedule = list(prefix)
        for position in range(10_000):
            runnable = [i for i, stepper in enumerate(steppers) if not stepper.done]
            if not runnable:
                break
            if position < len(prefix):
                choice = prefix[position]
            else:
                choice = runnable[0]
                todo.extend((*schedule, other) for other in runnable[1:])
                schedule.append(choice)
            steppers[choice].step()
        check([stepper.result for stepper in steppers])
        runs += 1
    return runs
