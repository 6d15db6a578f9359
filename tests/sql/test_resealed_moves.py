"""The SQL store's rename with data (a regenerate or login re-sealing the session for the new
id's key, ``ormsession.repositories.sql.moves``), stepped one statement at a time through
every interleaving with an update, a touch, a delete, a revoke and another rename, on
SQLite, PostgreSQL and MariaDB, on the direct driver path and SQLAlchemy's; and, on the
servers, with one statement holding its row lock while the other waits for it.

What must hold: the version check decides in the mark (a write committed before it makes
the rename change nothing; one after it finds no live row and is refused, so the copy never
carries stale bytes over a write that was accepted), the old bytes leave the row with the
mark, the copy holds the new bytes and keeps the version, and a destroy still wins.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from ormsession.expiry import now_us
from ormsession.repositories.base import Owner, StoredSession
from ormsession.repositories.sql import moves
from ormsession.repositories.sql.repository import SqlRepository
from ormsession.repositories.sql.statements import Query
from ormsession.testing.contract import HOUR, new_key
from ormsession.testing.users import owner
from ormsession.users import new_handle
from tests.sql.test_moved_markers import lock_waits, wait_until
from tests.support.sql_stepping import (
    Run,
    Stepper,
    every_interleaving,
    nothing_to_check,
    one_statement,
    rows,
    unreadable,
)
from tests.support.stores import open_store

OLD_BYTES = b"sealed-for-the-old-key"
NEW_BYTES = b"sealed-for-the-new-key"
WRITTEN = b"written-meanwhile"


def session(now: int, who: Owner | None = None, version: int = 1) -> StoredSession:
    return StoredSession(OLD_BYTES, version, now, now + HOUR, who)


def resealing(
    repository: SqlRepository,
    old: str,
    new: str,
    now: int,
    *,
    data: bytes = NEW_BYTES,
    version: int = 1,
    who: Owner | None = None,
) -> Any:
    """The flow of a rename of ``old`` to ``new`` moving ``data`` made from ``version``."""
    return moves.rename(repository._queries, old, new, now + HOUR, now, who, data, version)


def stored_bytes(repository: SqlRepository, *keys: str) -> list[bytes]:
    """Every column of the rows under ``keys``, as bytes, to search for old data."""
    return [
        value if isinstance(value, bytes) else str(value).encode()
        for row in rows(repository, *keys).values()
        for value in (bytes(v) if isinstance(v, memoryview) else v for v in row.values())
    ]


def nowhere(repository: SqlRepository, secret: bytes, *keys: str) -> None:
    assert not [value for value in stored_bytes(repository, *keys) if secret in value]


def test_the_mark_drops_the_old_bytes_and_the_copy_writes_the_new(
    repository: SqlRepository,
) -> None:
    now, old, new = now_us(), new_key(), new_key()
    assert repository.create(old, session(now, version=7), now)
    stepper = Stepper(
        resealing(repository, old, new, now, version=7), repository._execute, nothing_to_check
    )
    stepper.step()  # the mark
    marker = rows(repository, old)[old]
    assert marker["session_moved_to"] == new
    assert bytes(marker["session_data"]) == b"", "the marker kept the old bytes"
    assert marker["session_version"] == 7, "the copy carries the version from the marker"
    while not stepper.done:
        stepper.step()
    assert stepper.result is True
    moved = repository.read(new, now)
    assert moved is not None and (moved.data, moved.version) == (NEW_BYTES, 7)
    assert rows(repository, old)[old]["session_version"] == 0
    nowhere(repository, OLD_BYTES, old, new)


def test_a_stale_version_changes_nothing(repository: SqlRepository) -> None:
    now, old, new = now_us(), new_key(), new_key()
    assert repository.create(old, session(now, version=2), now)
    assert not repository.rename(old, new, now + HOUR, now, data=NEW_BYTES, expected_version=1)
    assert set(rows(repository, old, new)) == {old}
    current = repository.read(old, now)
    assert current is not None and (current.data, current.version) == (OLD_BYTES, 2)


def test_an_update_racing_a_resealing_rename_is_kept_or_refused(
    repository: SqlRepository,
) -> None:
    """The update made from version 1, the rename's new bytes too: whichever commits first
    wins; the other changes nothing, and no stale bytes overwrite an accepted write."""
    queries = repository._queries

    def start() -> Run:
        now, old, new = now_us(), new_key(), new_key()
        assert repository.create(old, session(now), now)

        def check(results: list[Any]) -> None:
            renamed, written = results
            assert renamed is not written, "exactly one of them wins"
            if written:
                assert set(rows(repository, old, new)) == {old}, "the rename changed something"
                kept = repository.read(old, now)
                assert kept is not None and (kept.data, kept.version) == (WRITTEN, 2)
            else:
                moved = repository.read(new, now)
                assert moved is not None and (moved.data, moved.version) == (NEW_BYTES, 1)
                assert repository.read(old, now) is None
                nowhere(repository, OLD_BYTES, old, new)

        write = queries.update(old, WRITTEN, now + HOUR, 1, now)
        flows = [
            (resealing(repository, old, new, now), nothing_to_check),
            (one_statement(write), nothing_to_check),
        ]
        return flows, check

    assert every_interleaving(repository, start) >= 4


def test_a_touch_racing_a_resealing_rename_never_stops_it(repository: SqlRepository) -> None:
    queries = repository._queries

    def start() -> Run:
        now, old, new = now_us(), new_key(), new_key()
        assert repository.create(old, session(now), now)

        def check(results: list[Any]) -> None:
            renamed, _ = results
            assert renamed is True, "a touch changes no version"
            moved = repository.read(new, now)
            assert moved is not None and (moved.data, moved.version) == (NEW_BYTES, 1)
            nowhere(repository, OLD_BYTES, old, new)

        touch = queries.touch(old, now + 2 * HOUR, now)
        flows = [
            (resealing(repository, old, new, now), nothing_to_check),
            (one_statement(touch), nothing_to_check),
        ]
        return flows, check

    assert every_interleaving(repository, start) >= 4


def test_a_delete_wins_over_a_resealing_rename_in_every_order(repository: SqlRepository) -> None:
    queries = repository._queries

    def start() -> Run:
        now, old, new = now_us(), new_key(), new_key()
        assert repository.create(old, session(now), now)

        def check(results: list[Any]) -> None:
            assert rows(repository, old, new) == {}, (results, "a copy or marker was left")

        flows = [
            (resealing(repository, old, new, now), nothing_to_check),
            (moves.delete(queries, old), unreadable(repository, old)),
        ]
        return flows, check

    assert every_interleaving(repository, start) >= 4


@pytest.mark.parametrize("login", [False, True], ids=["regenerate", "login"])
def test_a_revoke_wins_over_a_resealing_rename_in_every_order(
    repository: SqlRepository, login: bool
) -> None:
    queries = repository._queries

    def start() -> Run:
        now, old, new = now_us(), new_key(), new_key()
        who = owner(f"u-{new_handle()}")
        assert repository.create(old, session(now, who), now)
        relogin = owner(who.user_id, handle=who.handle, ip="10.0.0.1") if login else None

        def check(results: list[Any]) -> None:
            _, ended = results
            assert ended == 1, "the session was live when the revoke looked"
            for key in (old, new):
                assert repository.read(key, now) is None, "a revoked session is readable"
            assert repository.sessions_of(who.user_id, now) == []
            nowhere(repository, OLD_BYTES, old, new)

        flows = [
            (resealing(repository, old, new, now, who=relogin), nothing_to_check),
            (moves.revoke(queries, "revoke_all", who.user_id, None, None, now), nothing_to_check),
        ]
        return flows, check

    assert every_interleaving(repository, start) >= 10


def test_of_two_resealing_renames_one_wins_in_every_order(repository: SqlRepository) -> None:
    def start() -> Run:
        now, old, one, other = now_us(), new_key(), new_key(), new_key()
        assert repository.create(old, session(now), now)

        def check(results: list[Any]) -> None:
            assert sorted(results) == [False, True]
            winner, data = (one, b"for-one") if results[0] else (other, b"for-other")
            assert set(rows(repository, old, one, other)) == {old, winner}
            moved = repository.read(winner, now)
            assert moved is not None and (moved.data, moved.version) == (data, 1)
            nowhere(repository, OLD_BYTES, old, one, other)

        flows = [
            (resealing(repository, old, one, now, data=b"for-one"), nothing_to_check),
            (resealing(repository, old, other, now, data=b"for-other"), nothing_to_check),
        ]
        return flows, check

    assert every_interleaving(repository, start) >= 6


# -- on the servers: one statement waits for the other's row lock ------------------------
def in_transaction(repository: SqlRepository, query: Query[Any]) -> Any:
    """``query`` run in a transaction left open (it holds its row locks): the caller commits
    with ``.commit()`` on what is returned, and closes it."""
    engine = create_engine(repository.engine.url, poolclass=NullPool)
    connection = engine.connect()
    transaction = connection.begin()
    result = connection.execute(query.statement, query.params)
    assert query.extract(result), "the blocking statement found its row"
    return engine, connection, transaction


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_an_update_waiting_for_the_marks_lock_is_refused(
    request: pytest.FixtureRequest, backend: str
) -> None:
    """PostgreSQL re-checks the row the update waited for as the mark left it, InnoDB reads
    its latest version: a marker, which no update's WHERE matches."""
    with open_store(request, backend, "sync") as store:
        assert isinstance(store, SqlRepository)
        now, old, new = now_us(), new_key(), new_key()
        assert store.create(old, session(now), now)
        mark = store._queries.mark_moved(old, new, now + HOUR, now, None, 1, resealed=True)
        engine, blocker, transaction = in_transaction(store, mark)
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                written = pool.submit(store.update, old, WRITTEN, now + HOUR, 1, now)
                wait_until(lambda: lock_waits(store.engine) == 1, "the update waits")
                transaction.commit()
                assert written.result(timeout=10) is None, "an update of a marker was accepted"
        finally:
            blocker.close()
            engine.dispose()
        assert store.read(old, now) is None
        assert bytes(rows(store, old)[old]["session_data"]) == b""


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_a_resealing_rename_waiting_for_an_updates_lock_changes_nothing(
    request: pytest.FixtureRequest, backend: str
) -> None:
    """The mark re-checks the version on the row the update left: it moved on, so the
    rename returns False with nothing changed, and the update's bytes stay."""
    with open_store(request, backend, "sync") as store:
        assert isinstance(store, SqlRepository)
        now, old, new = now_us(), new_key(), new_key()
        assert store.create(old, session(now), now)
        update = store._queries.update(old, WRITTEN, now + HOUR, 1, now)
        engine, blocker, transaction = in_transaction(store, update)
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                renamed = pool.submit(
                    store.rename, old, new, now + HOUR, now, data=NEW_BYTES, expected_version=1
                )
                wait_until(lambda: lock_waits(store.engine) == 1, "the mark waits")
                transaction.commit()
                assert renamed.result(timeout=10) is False
        finally:
            blocker.close()
            engine.dispose()
        assert set(rows(store, old, new)) == {old}
        kept = store.read(old, now)
        assert kept is not None and (kept.data, kept.version) == (WRITTEN, 2)
