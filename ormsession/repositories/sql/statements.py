"""The SQL of every repository operation, built once per table and dialect.

Shared by the sync and async SQL repositories. Every operation is a single statement, so it
is atomic on its own and costs one round trip: compare-and-set is an ``UPDATE ... WHERE
version = :expected``; rename is an ``UPDATE`` of the primary key; gc deletes one bounded,
index-backed batch per statement. Expiry is compared with a ``now`` bound from Python, never
the database clock, so app and database time zones cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Delete, Select, Table, Update, bindparam, delete, func, insert, select
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import BindParameter

__all__ = ["SqlStatements"]


@dataclass(frozen=True, slots=True)
class SqlStatements:
    read: Select[Any]
    insert: Insert
    reclaim_expired_key: Delete
    update: Update
    touch: Update
    delete: Delete
    rename: Update
    count: Select[Any]
    count_expired: Select[Any]
    table: Table
    dialect_name: str

    def delete_expired(self, limit: int) -> Delete:
        """One gc batch of at most ``limit`` rows (cached: MySQL needs a literal LIMIT)."""
        return _delete_expired(self.table, self.dialect_name, limit)

    @classmethod
    def build(cls, table: Table, dialect_name: str) -> SqlStatements:
        c = table.c
        key: BindParameter[str] = bindparam("key")
        now: BindParameter[Any] = bindparam("now")
        live = (c.session_key == key) & (c.session_expiry > now)
        return cls(
            read=select(
                c.session_data, c.session_version, c.session_created, c.session_expiry
            ).where(live),
            insert=insert(table),
            reclaim_expired_key=delete(table).where(
                (c.session_key == key) & (c.session_expiry <= now)
            ),
            update=update_cas(table, live),
            touch=table.update().where(live).values(session_expiry=bindparam("expires_at")),
            delete=delete(table).where(c.session_key == key),
            rename=table.update()
            .where(live)
            .values(session_key=bindparam("new_key"), session_expiry=bindparam("expires_at")),
            count=select(func.count()).select_from(table).where(c.session_expiry > now),
            count_expired=select(func.count()).select_from(table).where(c.session_expiry <= now),
            table=table,
            dialect_name=dialect_name,
        )


def update_cas(table: Table, live: Any) -> Update:
    c = table.c
    return (
        table.update()
        .where(live & (c.session_version == bindparam("expected_version")))
        .values(
            session_data=bindparam("data"),
            session_expiry=bindparam("expires_at"),
            session_version=c.session_version + 1,
        )
    )


@lru_cache(maxsize=64)
def _delete_expired(table: Table, dialect_name: str, limit: int) -> Delete:
    """One batch of gc: at most ``limit`` expired rows, found through the expiry index."""
    c = table.c
    expired = c.session_expiry <= bindparam("now")
    if dialect_name in ("mysql", "mariadb"):
        # MySQL refuses LIMIT in a subquery of the table being deleted from, but has
        # DELETE ... ORDER BY ... LIMIT, which walks the index in order.
        return delete(table).where(expired).with_dialect_options(mysql_limit=limit)
    batch = select(c.session_key).where(expired).limit(limit)
    if dialect_name == "postgresql":
        # SKIP LOCKED: gc running on several nodes at once shares the work instead of
        # queueing behind each other's row locks.
        batch = batch.with_for_update(skip_locked=True)
    return delete(table).where(c.session_key.in_(batch.scalar_subquery()))
