"""SQL stores give a record back exactly: times to the µs and versions past 32 bits.

The contract allows other stores a millisecond of slack; SQL columns keep µs, and each
dialect's read decodes them its own way (PostgreSQL and MariaDB from one packed column), so
an off-by-one in an offset or an epoch would hide inside that slack. Run on the direct
driver path and on SQLAlchemy's, sync and async.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ormsession.expiry import now_us, to_us
from ormsession.ids import SessionIds, storage_key
from ormsession.repositories.base import SessionRepository, StoredSession
from ormsession.repositories.sql import async_repository as async_sql
from ormsession.repositories.sql import repository as sync_sql
from tests.support.sql_fixtures import SQL_BACKENDS
from tests.support.stores import MODES, open_store

#: Either side of PostgreSQL's own epoch (2000-01-01), where its stored µs change sign.
BEFORE_2000 = to_us(datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
AFTER_2000 = to_us(datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=UTC))


@pytest.fixture(
    params=[
        (backend, mode, path)
        for backend in SQL_BACKENDS
        for mode in MODES
        for path in ("driver", "sqlalchemy")
    ],
    ids=lambda param: "-".join(param),
)
def repository(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SessionRepository]:
    backend, mode, path = request.param
    if path == "sqlalchemy":
        monkeypatch.setattr(sync_sql, "DBAPI_DRIVERS", frozenset())
        monkeypatch.setattr(async_sql, "driver_for", lambda _name: None)
    with open_store(request, backend, mode) as store:
        yield store


@pytest.mark.parametrize(
    ("created_us", "expires_us"),
    [
        (now_us() + 1, now_us() + 3_600_000_007),  # odd µs on both
        (BEFORE_2000, to_us(datetime(2199, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))),
        (AFTER_2000, to_us(datetime(2100, 6, 1, 12, 0, 0, 1, tzinfo=UTC))),
    ],
)
@pytest.mark.parametrize("version", [1, 2**31 + 5, 2**62 + 3])
def test_read_gives_back_every_field_exactly(
    repository: SessionRepository, created_us: int, expires_us: int, version: int
) -> None:
    key = storage_key(SessionIds().generate())
    data = b"\x00 packed \xff" + bytes(range(256))
    stored = StoredSession(data, version, created_us, expires_us)
    assert repository.create(key, stored, now_us())
    assert repository.read(key, now_us()) == stored
