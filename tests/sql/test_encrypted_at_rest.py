"""Data encrypted at rest on the SQL store, end to end: a real manager (sync and async,
encryption on by default) on SQLite, PostgreSQL and MariaDB through every driver, and every
row and column of the test's table read back through an engine of its own (another
connection and a sync driver: what someone with access to the database sees and changes).

What is checked: no stored byte (any column of any row: sessions, moved markers, the owner
columns of the user index) holds the session data or the id; the storage key, which the
table does hold, decrypts nothing; a row changed in the database (its ciphertext, its
nonce, or its associated data: the data copied under another session's key, or the row
rebound to another user) opens as a fresh session with a logged warning; and after a
regenerate or a login the old ciphertext is nowhere in the table (the old key's row is a
marker holding no data).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from ormsession.encryption import FORMAT
from ormsession.ids import storage_key
from ormsession.repositories.base import Owner
from tests.support.at_rest import (
    BODY,
    FLIPS,
    MARKER,
    NONCE,
    USER_AGENT,
    assert_nowhere,
    assert_opens_fresh,
    assert_storage_key_opens_nothing,
    flipped,
    id_forms,
    log_in,
    move,
    save_new,
)
from tests.support.drivers import DRIVER_MODES
from tests.support.raw_writes import sql_execute, sql_rows
from tests.support.sql_fixtures import SQL_BACKENDS
from tests.support.stores import MODES, open_manager

pytestmark = pytest.mark.timeout(120)

#: Each database through its default drivers (sync and asyncio), and every other driver in
#: the modes it has.
TARGETS = [
    pytest.param((backend, mode), id=f"{backend}-{mode}")
    for backend in SQL_BACKENDS
    for mode in MODES
] + [
    pytest.param((driver, mode), id=f"{driver}-{mode}")
    for driver, modes in DRIVER_MODES.items()
    for mode in modes
]


@pytest.fixture(params=TARGETS)
def manager(request: pytest.FixtureRequest) -> Iterator[Any]:
    store, mode = request.param
    with open_manager(request, store, mode) as manager:
        yield manager


def as_bytes(value: Any) -> bytes:
    """A column's value as the bytes to search: binary as stored, text as UTF-8, times and
    numbers as printed."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, datetime):
        return value.isoformat().encode()
    return str(value).encode()


def dump(manager: Any) -> list[dict[str, Any]]:
    """Every row of the test's table, every column (None where NULL)."""
    found = sql_rows(manager)
    assert found, "the test wrote no row"
    return found


def cells(manager: Any) -> list[tuple[bytes, bytes]]:
    """Every non-NULL cell of the test's table as (column name, value)."""
    return [
        (column.encode(), as_bytes(value))
        for row in dump(manager)
        for column, value in row.items()
        if value is not None
    ]


def row_of(manager: Any, session_id: str) -> dict[str, Any]:
    key = storage_key(session_id)
    (row,) = [row for row in dump(manager) if row["session_key"] == key]
    return row


def sealed_of(manager: Any, session_id: str) -> bytes:
    return as_bytes(row_of(manager, session_id)["session_data"])


def set_data(manager: Any, session_id: str, data: bytes) -> None:
    sql_execute(
        manager,
        "UPDATE session SET session_data = :data WHERE session_key = :key",
        data=data,
        key=storage_key(session_id),
    )


def test_no_stored_byte_holds_the_data_or_the_id(manager: Any) -> None:
    anonymous = save_new(manager, secret=MARKER)
    visitor = save_new(manager, secret=MARKER, cart=["apple"])
    bound = log_in(manager, visitor)
    assert manager.open(bound)["secret"] == MARKER and manager.open(anonymous)["secret"] == MARKER
    ids = [form for sid in (anonymous, visitor, bound) for form in id_forms(sid)]
    assert_nowhere(cells(manager), MARKER.encode(), *ids)
    everything = dump(manager)
    sessions = [row for row in everything if row["session_moved_to"] is None]
    markers = [row for row in everything if row["session_moved_to"] is not None]
    assert len(sessions) == 2 and len(markers) == 1, everything
    assert all(as_bytes(row["session_data"])[:1] == FORMAT for row in sessions)
    assert as_bytes(markers[0]["session_data"]) == b""
    owned = [row for row in sessions if row["session_user_id"] is not None]
    assert [(r["session_user_id"], r["session_user_agent"]) for r in owned] == [("ann", USER_AGENT)]


def test_the_storage_key_opens_nothing(manager: Any) -> None:
    sessions = [save_new(manager, secret=MARKER), log_in(manager, save_new(manager, a=MARKER))]
    for session_id in sessions:
        row = row_of(manager, session_id)
        assert row["session_key"] == storage_key(session_id)
        owner = None
        if row["session_user_id"] is not None:
            owner = Owner(row["session_user_id"], row["session_handle"], None, None)
        assert_storage_key_opens_nothing(row["session_key"], as_bytes(row["session_data"]), owner)
        assert manager.open(session_id), "while the id itself opens it"


@pytest.mark.parametrize("offset", FLIPS)
def test_a_flipped_byte_is_a_fresh_session_and_a_warning(
    manager: Any, offset: int, caplog: pytest.LogCaptureFixture
) -> None:
    sid = save_new(manager, secret=MARKER)
    set_data(manager, sid, flipped(sealed_of(manager, sid), offset))
    assert_opens_fresh(manager, sid, caplog, "secret")


def test_data_copied_under_another_key_is_a_fresh_session_and_a_warning(
    manager: Any, caplog: pytest.LogCaptureFixture
) -> None:
    victim, attacker = save_new(manager, secret=MARKER), save_new(manager, mine=1)
    set_data(manager, attacker, sealed_of(manager, victim))
    assert_opens_fresh(manager, attacker, caplog, "secret", "mine")


@pytest.mark.parametrize("column", ["session_user_id", "session_handle"])
def test_a_row_rebound_to_another_owner_is_a_fresh_session_and_a_warning(
    manager: Any, column: str, caplog: pytest.LogCaptureFixture
) -> None:
    sid = log_in(manager, save_new(manager, secret=MARKER), user="ann")
    assert row_of(manager, sid)["session_user_id"] == "ann"
    sql_execute(
        manager,
        f"UPDATE session SET {column} = 'mallory' WHERE session_key = :key",
        key=storage_key(sid),
    )
    assert_opens_fresh(manager, sid, caplog, "secret")


@pytest.mark.parametrize("how", ["regenerate", "login"])
def test_after_a_regenerate_or_login_the_old_ciphertext_is_nowhere(manager: Any, how: str) -> None:
    sid = save_new(manager, secret=MARKER)
    old = sealed_of(manager, sid)
    new_sid = move(manager, sid, how)
    # Neither the old ciphertext nor its nonce is in any column of any row; the old key's
    # row is a marker holding no data, and the new one holds new bytes.
    assert_nowhere(cells(manager), old[BODY], old[NONCE])
    marker = row_of(manager, sid)
    assert marker["session_moved_to"] == storage_key(new_sid)
    assert as_bytes(marker["session_data"]) == b"" and marker["session_version"] == 0
    assert sealed_of(manager, new_sid) != old
    assert manager.open(sid).is_new
