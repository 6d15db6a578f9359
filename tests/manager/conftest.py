"""The manager suite's fixtures: a manager on every store, sync and async, with a clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from tests.support.stores import FakeClock, open_manager, store_params


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=store_params())
def make_manager(
    request: pytest.FixtureRequest, clock: FakeClock
) -> Callable[..., AbstractContextManager[Any]]:
    """``with make_manager(**options) as manager:`` on this test's store and mode."""
    name, mode = request.param

    def make(**options: Any) -> AbstractContextManager[Any]:
        options.setdefault("clock", clock)
        return open_manager(request, name, mode, **options)

    return make


@pytest.fixture
def manager(make_manager: Callable[..., AbstractContextManager[Any]]) -> Iterator[Any]:
    with make_manager() as manager:
        yield manager
