"""The SQL store's SQLAlchemy execution path, on the shared contract.

Drivers the store has no direct path for (``dbapi.DBAPI_DRIVERS``, ``async_dbapi``) run
their statements through SQLAlchemy's own execution layer. Every driver installed here has a
direct path, so this module forces the other one and runs the whole contract suite on it,
sync and async, on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ormsession.repositories.base import AsyncSessionRepository, SessionRepository
from ormsession.repositories.sql import async_repository as async_sql
from ormsession.repositories.sql import repository as sync_sql
from ormsession.testing import AsyncRepositoryContract, RepositoryContract
from tests.support.sql_fixtures import SQL_BACKENDS
from tests.support.stores import open_async_repository, open_store


def force_the_sqlalchemy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_sql, "DBAPI_DRIVERS", frozenset())
    monkeypatch.setattr(async_sql, "driver_for", lambda _name: None)


class TestSyncSQLAlchemyPath(RepositoryContract):
    @pytest.fixture(params=SQL_BACKENDS, ids=lambda backend: f"{backend}-sync-sqlalchemy")
    def repository(
        self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[SessionRepository]:
        force_the_sqlalchemy_path(monkeypatch)
        with open_store(request, request.param, "sync") as store:
            assert getattr(store, "_raw", False) is False
            yield store


class TestAsyncSQLAlchemyPath(AsyncRepositoryContract):
    @pytest.fixture(params=SQL_BACKENDS, ids=lambda backend: f"{backend}-async-sqlalchemy")
    def async_repository(
        self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
    ) -> AsyncSessionRepository:
        force_the_sqlalchemy_path(monkeypatch)
        store = open_async_repository(request, request.param)
        assert getattr(store, "_driver", None) is None
        return store
