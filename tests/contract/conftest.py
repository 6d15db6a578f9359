"""The contract suite's one fixture: a repository of every store, sync and async."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ormsession.repositories.base import SessionRepository
from tests.support.stores import open_store, store_params


@pytest.fixture(params=store_params())
def repository(request: pytest.FixtureRequest) -> Iterator[SessionRepository]:
    name, mode = request.param
    with open_store(request, name, mode) as repository:
        yield repository
