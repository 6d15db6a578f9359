"""This repository's stores, sync and async, through the shipped contract suite.

The tests are :mod:`ormsession.testing`'s, exactly as a third-party store runs them; here
the fixtures are parametrized over every store of ``tests/support/stores.py``, so a test id
names the store and the mode (``TestSyncStores::test_...[redis-sync]``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ormsession.repositories.base import AsyncSessionRepository, SessionRepository
from ormsession.testing import AsyncRepositoryContract, RepositoryContract
from tests.support.stores import open_async_repository, open_store, store_params


class TestSyncStores(RepositoryContract):
    @pytest.fixture(params=store_params(modes=("sync",)))
    def repository(self, request: pytest.FixtureRequest) -> Iterator[SessionRepository]:
        name, mode = request.param
        with open_store(request, name, mode) as repository:
            yield repository


class TestAsyncStores(AsyncRepositoryContract):
    @pytest.fixture(params=store_params(modes=("async",)))
    def async_repository(self, request: pytest.FixtureRequest) -> AsyncSessionRepository:
        name, _ = request.param
        return open_async_repository(request, name)
