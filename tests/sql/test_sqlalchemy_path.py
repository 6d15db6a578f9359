"""The SQL store's SQLAlchemy execution path, on the shared contract.

Drivers the store has no direct path for (``dbapi.DBAPI_DRIVERS``, ``async_dbapi``) run
their statements through SQLAlchemy's own execution layer. Every driver installed here has a
direct path, so this module forces the other one and runs the whole contract suite on it,
sync and async, on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ormsession.repositories.base import SessionRepository
from ormsession.repositories.sql import async_repository as async_sql
from ormsession.repositories.sql import repository as sync_sql
from tests.contract.test_repository_contract import *  # noqa: F403 -- the same behaviours
from tests.support.sql_fixtures import SQL_BACKENDS
from tests.support.stores import MODES, open_store


@pytest.fixture(
    params=[(backend, mode) for backend in SQL_BACKENDS for mode in MODES],
    ids=lambda param: f"{param[0]}-{param[1]}-sqlalchemy",
)
def repository(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SessionRepository]:
    monkeypatch.setattr(sync_sql, "DBAPI_DRIVERS", frozenset())
    monkeypatch.setattr(async_sql, "driver_for", lambda _name: None)
    name, mode = request.param
    with open_store(request, name, mode) as store:
        inner = getattr(store, "inner", store)
        assert getattr(inner, "_raw", False) is False
        assert getattr(inner, "_driver", None) is None
        yield store
