"""The metrics suite's fixtures: a manager with a metrics callback, on the memory store and
two real ones (SQLite, the machine's Redis), sync and async."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from ormsession.metrics import MetricEvent
from tests.support.stores import FakeClock, open_manager, store_params

#: The ``ormsession.store`` attribute each store target reports.
STORE_KINDS = {"memory": "memory", "sqlite": "sqlite", "redis": "redis"}

#: Short names for the attributes, as :meth:`Events.total` takes them.
ATTRIBUTES = {
    "store": "ormsession.store",
    "operation": "ormsession.operation",
    "outcome": "ormsession.outcome",
    "flow": "ormsession.flow",
    "dropped": "ormsession.changes_dropped",
    "error": "error.type",
}


class Events(list[MetricEvent]):
    """What the metrics callback received, with the look-ups the tests need."""

    def named(self, name: str) -> list[MetricEvent]:
        return [event for event in self if event.name == name]

    def total(self, name: str, **attributes: str) -> float:
        """The sum of the values of ``name`` with these attributes (short names)."""
        wanted = {ATTRIBUTES[short]: value for short, value in attributes.items()}
        return sum(
            event.value
            for event in self.named(name)
            if all(event.attributes.get(k) == v for k, v in wanted.items())
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture(params=store_params(list(STORE_KINDS)))
def make_manager(
    request: pytest.FixtureRequest, clock: FakeClock, events: Events
) -> Callable[..., AbstractContextManager[Any]]:
    """``with make_manager(**options) as manager:``: this test's store and mode, metrics
    to ``events``."""
    name, mode = request.param

    def make(**options: Any) -> AbstractContextManager[Any]:
        options.setdefault("clock", clock)
        options.setdefault("metrics", events.append)
        return open_manager(request, name, mode, **options)

    make.store = name  # type: ignore[attr-defined]
    return make


@pytest.fixture
def manager(make_manager: Callable[..., AbstractContextManager[Any]]) -> Iterator[Any]:
    with make_manager() as manager:
        yield manager
