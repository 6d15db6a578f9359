"""The SQL suites' shared fixture: one SQL store, on each execution path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ormsession.repositories.sql import repository as sync_sql
from ormsession.repositories.sql.repository import SqlRepository
from tests.support.sql_fixtures import SQL_BACKENDS
from tests.support.stores import open_store


@pytest.fixture(
    params=[(backend, path) for backend in SQL_BACKENDS for path in ("driver", "sqlalchemy")],
    ids=lambda param: "-".join(param),
)
def repository(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A synchronous SQL store on each backend, through the driver directly and through
    SQLAlchemy (a module that needs another store defines its own ``repository``)."""
    backend, path = request.param
    if path == "sqlalchemy":
        monkeypatch.setattr(sync_sql, "DBAPI_DRIVERS", frozenset())
    with open_store(request, backend, "sync") as store:
        assert isinstance(store, SqlRepository)
        assert store._raw is (path == "driver")
        yield store
