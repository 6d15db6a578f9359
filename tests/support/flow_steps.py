"""Sans-I/O flows stepped by hand against a real store: interleavings and crashes on cue.

A :class:`Stepper` answers one operation of its flow per :meth:`~Stepper.step`, with the
repository's own ``perform`` (the real SDK, the real server), so two flows can be run in
any chosen order of their operations, and a flow can be abandoned (a crashed process) or
handed a failure between any two of its steps.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterator
from typing import Any

__all__ = ["Stepper", "interleave", "schedules"]


class Stepper:
    """One flow, driven an operation at a time by ``perform``."""

    def __init__(self, flow: Generator[Any, Any, Any], perform: Callable[[Any], Any]) -> None:
        self.flow = flow
        self.perform = perform
        self.steps = 0
        self.done = False
        self.result: Any = None
        self._next(lambda: next(flow))

    @property
    def op(self) -> Any:
        """The operation the next step answers."""
        return self._op

    def step(self) -> None:
        """Answer the pending operation (an exception from ``perform`` is thrown in, as
        :func:`ormsession.flows.run` does)."""
        assert not self.done
        self.steps += 1
        try:
            result = self.perform(self._op)
        except Exception as exc:
            failure = exc
            self._next(lambda: self.flow.throw(failure))
        else:
            self._next(lambda: self.flow.send(result))

    def fail(self, exc: Exception) -> None:
        """Throw ``exc`` in instead of answering: the operation failed (unsent, or sent
        with its answer lost)."""
        assert not self.done
        self.steps += 1
        self._next(lambda: self.flow.throw(exc))

    def finish(self) -> Any:
        while not self.done:
            self.step()
        return self.result

    def crash(self) -> None:
        """Abandon the flow here, as a process that died would."""
        self.flow.close()
        self.done = True

    def _next(self, advance: Callable[[], Any]) -> None:
        try:
            self._op = advance()
        except StopIteration as stop:
            self.done = True
            self.result = stop.value


def schedules(first: int, second: int) -> Iterator[tuple[bool, ...]]:
    """Every order of ``first`` steps of one flow (True) and ``second`` of another (False)."""
    total = first + second
    for positions in itertools.combinations(range(total), first):
        chosen = set(positions)
        yield tuple(index in chosen for index in range(total))


def interleave(a: Stepper, b: Stepper, schedule: tuple[bool, ...]) -> None:
    """Step ``a`` and ``b`` in ``schedule``'s order (a flow that ended early gives its
    turns to the other), then finish both."""
    for turn_a in schedule:
        runner = a if turn_a else b
        if runner.done:
            runner = b if turn_a else a
        if not runner.done:
            runner.step()
    a.finish()
    b.finish()
