"""Every SQL driver beyond each database's default pair through the shipped contract suite,
in each mode it has (tests/support/drivers.py): psycopg 3 sync and asyncio, mysqlclient and
MariaDB Connector/Python sync, aiomysql asyncio."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ormsession.repositories.base import AsyncSessionRepository, SessionRepository
from ormsession.testing import AsyncRepositoryContract, RepositoryContract
from tests.support.drivers import driver_params
from tests.support.stores import open_async_repository, open_store


class TestSyncDrivers(RepositoryContract):
    @pytest.fixture(params=driver_params("sync"))
    def repository(self, request: pytest.FixtureRequest) -> Iterator[SessionRepository]:
        with open_store(request, request.param, "sync") as repository:
            yield repository


class TestAsyncDrivers(AsyncRepositoryContract):
    @pytest.fixture(params=driver_params("async"))
    def async_repository(self, request: pytest.FixtureRequest) -> AsyncSessionRepository:
        return open_async_repository(request, request.param)
