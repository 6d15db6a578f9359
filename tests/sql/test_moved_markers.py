"""The SQL store's moved markers (rename and delete, ``ormsession.repositories.sql.moves``).

The contract suite checks what a rename and a delete promise, and races them on threads;
whether a race hits the narrow windows between a rename's statements is luck. Here the
flows are stepped by hand, one statement at a time, through *every* interleaving of two
operations, on SQLite, PostgreSQL and MariaDB, on the direct driver path and SQLAlchemy's
(the asyncio twin runs the same flows and statements).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.pool import NullPool

from ormsession.expiry import from_us, now_us
from ormsession.repositories.sql import moves
from ormsession.repositories.sql.repository import SqlRepository
from ormsession.repositories.sql.types import us_from_column
from ormsession.testing.contract import HOUR, new_key, record
from tests.support.sql_stepping import (
    Run,
    every_interleaving,
    nothing_to_check,
    one_statement,
    rows,
    unreadable,
)
from tests.support.stores import open_store


def test_a_marker_row_is_the_new_key_with_no_data(repository: SqlRepository) -> None:
    now, old, new = now_us(), new_key(), new_key()
    assert repository.create(old, record(now, b"secret", version=7), now)
    assert repository.rename(old, new, now + 2 * HOUR, now)
    stored = rows(repository, old, new)
    marker, moved = stored[old], stored[new]
    assert marker["session_moved_to"] == new
    assert bytes(marker["session_data"]) == b"", "a marker must not keep the session's data"
    assert marker["session_version"] == 0
    assert us_from_column(marker["session_expiry"]) == now + 2 * HOUR
    assert moved["session_moved_to"] is None
    assert bytes(moved["session_data"]) == b"secret"
    assert moved["session_version"] == 7
    assert us_from_column(moved["session_created"]) == now
    assert us_from_column(moved["session_expiry"]) == now + 2 * HOUR


def test_a_delete_wins_over_a_rename_in_every_order(repository: SqlRepository) -> None:
    queries = repository._queries

    def start() -> Run:
        now, old, new = now_us(), new_key(), new_key()
        assert repository.create(old, record(now, b"session"), now)

        def check(results: list[Any]) -> None:
            renamed, _ = results
            assert rows(repository, old, new) == {}, (renamed, "a copy or marker was left")

        flows = [
            (moves.rename(queries, old, new, now + HOUR, now), nothing_to_check),
            # new is nobody's until the rename returns: only old must be dead at once
            (moves.delete(queries, old), unreadable(repository, old)),
        ]
        return flows, check

    assert every_interleaving(repository, start) >= 4


def test_a_delete_along_a_chain_wins_over_its_next_rename(repository: SqlRepository) -> None:
    queries = repository._queries

    def start() -> Run:
        now, first, second, third = now_us(), new_key(), new_key(), new_key()
        assert repository.create(first, record(now, b"session"), now)
        assert repository.rename(first, second, now + HOUR, now)

        def check(results: list[Any]) -> None:
            assert rows(repository, first, second, third) == {}

        flows = [
            (moves.rename(queries, second, third, now + HOUR, now), nothing_to_check),
            (moves.delete(queries, first), unreadable(repository, first, second)),
        ]
        return flows, check

    assert every_interleaving(repository, start) >= 6


def test_of_two_renames_one_wins_in_every_order(repository: SqlRepository) -> None:
    queries = repository._queries

    def start() -> Run:
        now, old, one, other = now_us(), new_key(), new_key(), new_key()
        assert repository.create(old, record(now, b"session"), now)

        def check(results: list[Any]) -> None:
            assert sorted(results) == [False, True]
            winner = one if results[0] else other
            stored = rows(repository, old, one, other)
            assert set(stored) == {old, winner}, "the loser must leave nothing behind"
            assert stored[old]["session_moved_to"] == winner
            moved = repository.read(winner, now)
            assert moved is not None and moved.data == b"session"

        flows = [
            (moves.rename(queries, old, one, now + HOUR, now), nothing_to_check),
            (moves.rename(queries, old, other, now + HOUR, now), nothing_to_check),
        ]
        return flows, check

    assert every_interleaving(repository, start) >= 6


def test_a_write_racing_a_rename_is_moved_or_refused(repository: SqlRepository) -> None:
    queries = repository._queries

    def start() -> Run:
        now, old, new = now_us(), new_key(), new_key()
        assert repository.create(old, record(now, b"before"), now)

        def check(results: list[Any]) -> None:
            renamed, written = results
            assert renamed is True
            moved = repository.read(new, now)
            assert moved is not None
            assert (moved.data, moved.version) == ((b"after", 2) if written else (b"before", 1))

        write = queries.update(old, b"after", now + HOUR, 1, now)
        flows = [
            (moves.rename(queries, old, new, now + HOUR, now), nothing_to_check),
            (one_statement(write), nothing_to_check),
        ]
        return flows, check

    assert every_interleaving(repository, start) >= 4


def test_two_deletes_of_one_chain_both_end(repository: SqlRepository) -> None:
    queries = repository._queries

    def start() -> Run:
        now, first, second = now_us(), new_key(), new_key()
        assert repository.create(first, record(now, b"session"), now)
        assert repository.rename(first, second, now + HOUR, now)

        def check(results: list[Any]) -> None:
            assert rows(repository, first, second) == {}

        # Each may return while the other is still on its way down the chain: only the
        # end state is checked.
        deletes = [(moves.delete(queries, first), nothing_to_check) for _ in range(2)]
        return deletes, check

    assert every_interleaving(repository, start) >= 10


def lock_waits(engine: Engine) -> int:
    """How many statements on this test session's database wait for a row lock."""
    if engine.dialect.name == "postgresql":
        query = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    else:
        query = (
            "SELECT count(*) FROM information_schema.INNODB_TRX t"
            " JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id"
            " WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()"
        )
    with engine.connect() as connection:
        return int(connection.execute(text(query)).scalar_one())


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        # Not faster: InnoDB refreshes INNODB_TRX only after 0.1 s without a read of it.
        time.sleep(0.15)


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_a_delete_that_looks_while_the_copy_is_being_made_still_wins(
    request: pytest.FixtureRequest, backend: str
) -> None:
    """The window the stepped runs cannot reach: the rename's ``INSERT ... SELECT`` has read
    the marker (PostgreSQL: its snapshot) but not yet written the copy when a delete removes
    the marker and finds nothing under the new key. An uncommitted row under the new key
    holds the insert there meanwhile."""
    with open_store(request, backend, "sync") as store:
        assert isinstance(store, SqlRepository)
        now, old, new = now_us(), new_key(), new_key()
        assert store.create(old, record(now, b"session"), now)
        # The store's own engine runs in autocommit: the blocker needs a transaction.
        transactional = create_engine(store.engine.url, poolclass=NullPool)
        with transactional.connect() as blocker:
            blocking = blocker.begin()
            blocker.execute(
                insert(store.table),
                {
                    "session_key": new,
                    "session_data": b"",
                    "session_version": 1,
                    "session_created": from_us(now),
                    "session_expiry": from_us(now),
                },
            )
            with ThreadPoolExecutor(max_workers=2) as pool:
                renamed = pool.submit(store.rename, old, new, now + HOUR, now)
                wait_until(lambda: lock_waits(store.engine) == 1, "the copy waits")
                deleted = pool.submit(store.delete, old)
                # PostgreSQL's delete runs to its end (nothing to wait for: it finds no row
                # under new); MariaDB's INSERT ... SELECT holds the marker's row lock, so
                # there the delete waits until the copy is made.
                wait_until(
                    lambda: deleted.done() or lock_waits(store.engine) == 2, "the delete ran"
                )
                if backend == "postgresql":
                    assert deleted.done()
                blocking.rollback()
                assert renamed.result(timeout=10) is True
                deleted.result(timeout=10)
        transactional.dispose()
        assert rows(store, old, new) == {}, "the destroy lost to the rename"
