"""Revision 0003 (the user index) up and down on SQLite, PostgreSQL and MariaDB, over rows
written at 0002, each in a fresh database."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import create_engine, inspect, text

from ormsession import schema
from ormsession.expiry import from_us, now_us
from ormsession.repositories.base import Owner
from ormsession.repositories.sql.repository import SqlRepository
from ormsession.repositories.sql.types import UTCDateTime
from ormsession.testing.contract import HOUR

pytestmark = pytest.mark.parametrize(
    "fresh_database_url", ["sqlite", "postgresql", "mysql"], indirect=True
)

TABLE = "app_sessions"  # the revision follows the configured table name
OWNER_COLUMNS = {
    "session_user_id",
    "session_handle",
    "session_user_agent",
    "session_ip",
    "session_seen",
}


def table_at_0002() -> sa.Table:
    """The table as revision 0002 left it (the model has moved on since)."""
    return sa.Table(
        TABLE,
        sa.MetaData(),
        sa.Column("session_key", sa.CHAR(64), primary_key=True),
        sa.Column("session_data", sa.LargeBinary),
        sa.Column("session_expiry", UTCDateTime),
        sa.Column("session_created", UTCDateTime),
        sa.Column("session_version", sa.BigInteger),
        sa.Column("session_moved_to", sa.CHAR(64)),
    )


def shape(engine: sa.Engine) -> tuple[set[str], dict[str | None, list[str | None]]]:
    with engine.connect() as connection:
        inspector = inspect(connection)
        columns = {column["name"] for column in inspector.get_columns(TABLE)}
        indexes = {index["name"]: index["column_names"] for index in inspector.get_indexes(TABLE)}
    return columns, indexes


def test_0003_up_keeps_old_rows_unbound_and_down_keeps_the_sessions(
    fresh_database_url: str,
) -> None:
    schema.upgrade(fresh_database_url, "0002_session_moved_to", table_name=TABLE)
    engine = create_engine(fresh_database_url)
    now, old, target = now_us(), "a" * 64, "b" * 64
    with engine.begin() as connection:
        connection.execute(
            table_at_0002().insert(),
            [
                {
                    "session_key": key,
                    "session_data": data,
                    "session_expiry": from_us(now + HOUR),
                    "session_created": from_us(now),
                    "session_version": 3,
                    "session_moved_to": moved_to,
                }
                for key, data, moved_to in ((old, b"kept", None), ("c" * 64, b"", target))
            ],
        )

    schema.upgrade(fresh_database_url, table_name=TABLE)
    columns, indexes = shape(engine)
    assert columns >= OWNER_COLUMNS
    assert indexes[f"ix_{TABLE}_session_user_id"] == ["session_user_id", "session_expiry"]
    repository = SqlRepository(engine, table_name=TABLE)
    stored = repository.read(old, now)
    assert stored is not None
    assert (stored.data, stored.version, stored.owner) == (b"kept", 3, None)
    assert repository.moved("c" * 64, now), "a marker of 0002 is still a marker"
    who = Owner("user-1", "h" * 22, "curl/8", "::1")
    assert repository.rename(old, target, now + HOUR, now, who)
    (listed,) = repository.sessions_of("user-1", now)
    assert (listed.key, listed.owner, listed.seen_us) == (target, who, now)

    schema.downgrade(fresh_database_url, "0002_session_moved_to", table_name=TABLE)
    columns, indexes = shape(engine)
    assert not OWNER_COLUMNS & columns
    assert set(indexes) == {f"ix_{TABLE}_session_expiry"}
    with engine.connect() as connection:
        found = connection.execute(
            text(f"SELECT session_key, session_data FROM {TABLE} WHERE session_moved_to IS NULL")
        )
        assert {key: bytes(data) for key, data in found} == {target: b"kept"}, (
            "the bound session stays, unbound"
        )

    schema.upgrade(fresh_database_url, table_name=TABLE)
    repository = SqlRepository(engine, table_name=TABLE)
    again = repository.read(target, now)
    assert again is not None and again.owner is None
    assert repository.sessions_of("user-1", now) == []
    schema.downgrade(fresh_database_url, "base", table_name=TABLE)
    with engine.connect() as connection:
        assert TABLE not in inspect(connection).get_table_names()
    engine.dispose()
