"""Statements the server rolls back to end a lock conflict are run again, not reported as an
outage.

Two conflicts, each set up deterministically with a transaction of the test's own:

- On PostgreSQL, an app's engine at REPEATABLE READ or SERIALIZABLE: a save or touch that
  waited for another transaction's update of the same row fails with serialization_failure
  (40001) once that transaction commits. Run again, it sees the committed row: a touch goes
  through, a save made from the old version loses its compare-and-set, as at READ COMMITTED.
- On MariaDB, a deadlock (1213): a gc batch that locked one expired row and waits for a
  second, which the test's transaction holds and which then asks for the first. InnoDB ends
  the smaller transaction (the test's is made larger); run again, the batch deletes both.

Each runs sync and asyncio, through the driver and through SQLAlchemy's execution layer.
The contract suite's threaded races (a rename against a revoke on MariaDB) meet the same
deadlocks by chance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

from ormsession.errors import StoreUnavailableError
from ormsession.expiry import now_us
from ormsession.repositories.base import StoredSession
from ormsession.repositories.sql.async_repository import AsyncSqlRepository
from ormsession.repositories.sql.repository import SqlRepository
from ormsession.schema import upgrade
from tests.support.drivers import with_driver
from tests.support.sql_paths import MYSQL_CASES, case_id, force_path
from tests.support.sql_paths import PG_CASES as ALL_PG_CASES

HOUR_US = 3600 * 1_000_000
#: asyncpg's direct path is left out of the PostgreSQL cases: it sends each statement
#: outside any transaction, where no snapshot can conflict.
PG_CASES = [case for case in ALL_PG_CASES if case != ("async", "postgresql+asyncpg", "driver")]


@pytest.fixture
def worker() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(1) as pool:
        yield pool


def in_worker(
    worker: ThreadPoolExecutor,
    mode: str,
    url: str,
    call: Callable[[Any], Any],
    engine_options: dict[str, Any] | None = None,
    timeout: float = 10,
) -> Future[Any]:
    """``call(repository)`` in a worker thread, sync or asyncio (``call`` then returns an
    awaitable). The repository is ormsession's own on ``url``, or with ``engine_options``
    an app's engine made with them."""
    if mode == "sync":

        def run_sync() -> Any:
            if engine_options is None:
                repository = SqlRepository.from_url(url, timeout=timeout)
            else:
                repository = SqlRepository(create_engine(url, **engine_options), owns_engine=True)
            try:
                return call(repository)
            finally:
                repository.close()

        return worker.submit(run_sync)

    async def run_async() -> Any:
        if engine_options is None:
            repository = AsyncSqlRepository.from_url(url, timeout=timeout)
        else:
            engine = create_async_engine(url, **engine_options)
            repository = AsyncSqlRepository(engine, owns_engine=True)
        try:
            await repository.start()
            return await call(repository)
        finally:
            await repository.close()

    return worker.submit(asyncio.run, run_async())


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def record(data: bytes, version: int, now: int, expires: int) -> StoredSession:
    return StoredSession(data, version, now, expires)


# -- PostgreSQL: serialization failures on an app's engine -------------------------------
@pytest.fixture(scope="module")
def pg_url(postgresql_url: str) -> str:
    upgrade(postgresql_url)
    return postgresql_url


def other_transaction_updates(connection: Connection, key: str) -> None:
    connection.execute(
        text(
            "UPDATE session SET session_data = 'other', session_version = session_version + 1 "
            "WHERE session_key = :key"
        ),
        {"key": key},
    )


def waiting_for_a_lock(admin: Connection) -> bool:
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return bool(admin.execute(query).scalar())


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
@pytest.mark.parametrize("case", PG_CASES, ids=case_id)
@pytest.mark.parametrize("operation", ["touch", "update"])
def test_a_write_that_waited_for_a_committed_update_is_run_again(
    pg_url: str,
    worker: ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
    isolation: str,
    case: tuple[str, str, str],
    operation: str,
) -> None:
    mode, drivername, path = case
    force_path(monkeypatch, path)
    now, key = now_us(), f"conflict-{operation}-{case_id(case)}-{isolation[0]}"
    setup = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with setup.connect() as admin:
            admin.execute(text("DELETE FROM session WHERE session_key = :key"), {"key": key})
        assert SqlRepository(setup).create(key, record(b"mine", 1, now, now + HOUR_US), now)
        with setup.connect() as other, setup.connect() as admin:
            other.execute(text("BEGIN"))
            other_transaction_updates(other, key)

            def write(repository: Any) -> Any:
                if operation == "touch":
                    return repository.touch(key, now + 2 * HOUR_US, now)
                return repository.update(key, b"mine, changed", now + 2 * HOUR_US, 1, now)

            url = with_driver(pg_url, drivername)
            result = in_worker(worker, mode, url, write, {"isolation_level": isolation})
            wait_until(lambda: waiting_for_a_lock(admin), "the store's write waits")
            other.execute(text("COMMIT"))
            outcome = result.result(timeout=15)
            stored = SqlRepository(setup).read(key, now)
        assert stored is not None
        if operation == "touch":
            assert outcome is True  # the session is live: the touch went through
            assert (stored.data, stored.version) == (b"other", 2)
            assert stored.expires_us == now + 2 * HOUR_US
        else:
            assert outcome is None  # made from version 1, which the other write replaced
            assert (stored.data, stored.version) == (b"other", 2)
    finally:
        setup.dispose()


# -- MariaDB: deadlocks ----------------------------------------------------------------
@pytest.fixture
def mysql_store_url(fresh_database_url: str) -> str:
    upgrade(fresh_database_url)
    return fresh_database_url


def innodb_lock_waits(admin: Connection) -> int:
    # InnoDB refreshes these tables only for a reader that has not read them for 100 ms.
    time.sleep(0.15)
    query = "SELECT count(*) FROM information_schema.innodb_lock_waits"
    return int(admin.execute(text(query)).scalar() or 0)


@pytest.mark.parametrize("fresh_database_url", ["mysql"], indirect=True)
@pytest.mark.parametrize("case", MYSQL_CASES, ids=case_id)
def test_a_gc_batch_chosen_to_end_a_deadlock_is_run_again(
    mysql_store_url: str,
    worker: ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[str, str, str],
) -> None:
    mode, drivername, path = case
    force_path(monkeypatch, path)
    now = now_us()
    setup = create_engine(mysql_store_url, isolation_level="AUTOCOMMIT")
    try:
        # Both expired; "a" comes first in the key and in the expiry index alike, so the
        # batch locks it before it asks for "b" whichever it walks.
        store = SqlRepository(setup)
        assert store.create("a", record(b"a", 1, now - 2 * HOUR_US, now - HOUR_US), now)
        assert store.create("b", record(b"b", 1, now - 2 * HOUR_US, now - HOUR_US + 1), now)
        with setup.connect() as admin:
            admin.execute(text("CREATE TABLE ballast (n INT PRIMARY KEY)"))
        with setup.connect() as other, setup.connect() as admin:
            other.execute(text("BEGIN"))
            # InnoDB rolls back the transaction that changed fewer rows: not this one.
            rows = ",".join(f"({n})" for n in range(50))
            other.execute(text(f"INSERT INTO ballast VALUES {rows}"))
            lock = text("SELECT session_key FROM session WHERE session_key = :key FOR UPDATE")
            other.execute(lock, {"key": "b"})
            url = with_driver(mysql_store_url, drivername)
            gc_batch = in_worker(
                worker, mode, url, lambda repository: repository.delete_expired(now, 100)
            )
            wait_until(lambda: innodb_lock_waits(admin) == 1, "the gc batch waits for b")
            other.execute(lock, {"key": "a"})  # the deadlock: the batch holds a
            other.execute(text("ROLLBACK"))
            assert gc_batch.result(timeout=15) == 2
        assert store.count(now - 3 * HOUR_US) == 0
    finally:
        with setup.connect() as admin:
            admin.execute(text("DROP TABLE IF EXISTS ballast"))
        setup.dispose()


# -- a conflict that lasts: reported at the deadline ----------------------------------
#: A trigger that ends every update of the table with the server's own lock-conflict error.
ALWAYS_CONFLICTING = {
    "postgresql": [
        "CREATE FUNCTION always_conflicting() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION 'always conflicting' USING ERRCODE = 'serialization_failure'; "
        "END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER always_conflicting BEFORE UPDATE ON session "
        "FOR EACH ROW EXECUTE FUNCTION always_conflicting()",
    ],
    "mysql": [
        "CREATE TRIGGER always_conflicting BEFORE UPDATE ON session FOR EACH ROW "
        "SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'always conflicting'"
    ],
}


@pytest.mark.parametrize(
    ("fresh_database_url", "case"),
    [("postgresql", case) for case in PG_CASES] + [("mysql", case) for case in MYSQL_CASES],
    ids=[f"postgresql-{case_id(c)}" for c in PG_CASES]
    + [f"mysql-{case_id(c)}" for c in MYSQL_CASES],
    indirect=["fresh_database_url"],
)
def test_a_conflict_that_lasts_is_reported_at_the_deadline_as_itself(
    fresh_database_url: str,
    worker: ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[str, str, str],
) -> None:
    # Tries until the deadline, not past it, and no last try cut by the deadline: that
    # would drop the connection (and, read as the server gone, the pool's others).
    mode, drivername, path = case
    force_path(monkeypatch, path)
    upgrade(fresh_database_url)
    now = now_us()
    setup = create_engine(fresh_database_url, isolation_level="AUTOCOMMIT")
    try:
        assert SqlRepository(setup).create("k", record(b"x", 1, now, now + HOUR_US), now)
        with setup.connect() as admin:
            for statement in ALWAYS_CONFLICTING[setup.dialect.name]:
                admin.execute(text(statement))

        def touch(repository: Any) -> Any:
            engine = getattr(repository.engine, "sync_engine", repository.engine)
            if mode == "sync":
                return touch_sync(repository, engine)
            return touch_async(repository, engine)

        def touch_sync(repository: Any, engine: Any) -> tuple[Exception, float, bool]:
            assert repository.read("k", now) is not None  # a pooled connection
            before, started = engine.pool._invalidate_time, time.monotonic()
            with pytest.raises(StoreUnavailableError) as error:
                repository.touch("k", now + 2 * HOUR_US, now)
            took = time.monotonic() - started
            return error.value, took, engine.pool._invalidate_time != before

        async def touch_async(repository: Any, engine: Any) -> tuple[Exception, float, bool]:
            assert await repository.read("k", now) is not None
            before, started = engine.pool._invalidate_time, time.monotonic()
            with pytest.raises(StoreUnavailableError) as error:
                await repository.touch("k", now + 2 * HOUR_US, now)
            took = time.monotonic() - started
            return error.value, took, engine.pool._invalidate_time != before

        url = with_driver(fresh_database_url, drivername)
        failure, took, pool_dropped = in_worker(worker, mode, url, touch, timeout=0.5).result(15)
        assert "no answer within 0.5 s" in str(failure) and "always conflicting" in str(failure)
        assert 0.3 < took < 0.5 + 0.5
        assert not pool_dropped
    finally:
        setup.dispose()
