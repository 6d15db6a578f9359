"""``doctor`` and ``stats`` on the SQL stores (see :mod:`ormsession.diagnostics`).

Checks: the server answers (one statement, which also reads its clock), the schema is at
ormsession's head revision, and the server's clock is near the app's (not on SQLite,
which runs in this process, on this clock).

Stats: the live count (an index range count); sizes from a **random sample** of live
sessions, read in key order from a random starting key: keys are SHA-256 hashes, so key
order is a random order and the sample costs one primary-key range read of ``sample``
rows, whatever the table's size (every live session when there are fewer); the oldest
session exactly, by ``MIN(session_created)`` over the live rows (one pass over them: no
index covers creation times).
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from ormsession.config import Config
from ormsession.diagnostics import Check, StoreStats, clock_check, sessions, summarize_sizes
from ormsession.errors import OrmsessionError, SchemaError
from ormsession.expiry import from_us, to_us
from ormsession.repositories.sql.errors import wrap_sql_error

if TYPE_CHECKING:
    from ormsession.repositories.sql.repository import SqlRepository

__all__ = ["SqlDiagnostics"]

_SERVER_CLOCK = {
    "postgresql": "SELECT EXTRACT(EPOCH FROM clock_timestamp())",
    "mysql": "SELECT UNIX_TIMESTAMP(NOW(6))",
    "mariadb": "SELECT UNIX_TIMESTAMP(NOW(6))",
}


class SqlDiagnostics:
    def __init__(self, repository: SqlRepository) -> None:
        self.repository = repository
        self.engine = repository.engine
        self.table = repository.table

    def checks(self, config: Config, now_us: int, max_skew: float) -> list[Check]:
        started = time.perf_counter()
        try:
            self._scalar(text("SELECT 1"))
        except OrmsessionError as exc:
            return [Check("store", False, str(exc))]
        took = (time.perf_counter() - started) * 1000
        return [
            Check("store", True, f"answers (a query in {took:.1f} ms)"),
            self._schema(),
            self._clock(max_skew),
        ]

    def _schema(self) -> Check:
        from ormsession.schema import HEAD_REVISION, check_schema

        try:
            with self.repository._bounded_connection("schema check") as connection:
                check_schema(connection, table_name=self.table.name)
        except SchemaError as exc:
            return Check("schema", False, str(exc))
        except OrmsessionError as exc:
            return Check("schema", False, f"cannot read the schema revision: {exc}")
        return Check("schema", True, f"table {self.table.name!r} at head ({HEAD_REVISION})")

    def _clock(self, max_skew: float) -> Check:
        query = _SERVER_CLOCK.get(self.engine.dialect.name)
        if query is None:
            return Check("clock", None, "not checked: SQLite runs in this process, on its clock")
        try:
            return clock_check(lambda: float(self._scalar(text(query))), max_skew)
        except OrmsessionError as exc:
            return Check("clock", False, f"cannot read the store's clock: {exc}")

    def stats(self, now_us: int, sample: int) -> StoreStats:
        live = self.repository.count(now_us)
        c = self.table.c
        now = from_us(now_us)
        is_live = (c.session_expiry > now) & c.session_moved_to.is_(None)
        start = secrets.token_hex(32)
        size = func.length(c.session_data)
        after = select(size).where(is_live & (c.session_key >= start))
        sizes = self._column(after.order_by(c.session_key).limit(sample))
        if len(sizes) < sample:  # wrap around to the keys before the random start
            before = select(size).where(is_live & (c.session_key < start))
            sizes += self._column(before.order_by(c.session_key).limit(sample - len(sizes)))
        how = (
            "every live session"
            if len(sizes) >= live
            else f"a random sample of {sessions(len(sizes), 'live')}, by key"
        )
        oldest = self._scalar(select(func.min(c.session_created)).where(is_live))
        return StoreStats(
            live,
            summarize_sizes([int(n) for n in sizes], how),
            None if oldest is None else to_us(oldest),
            "exact: one pass over the live sessions",
        )

    # -- plumbing ----------------------------------------------------------------------------
    def _scalar(self, statement: Any) -> Any:
        try:
            with self.repository._bounded_connection("doctor") as connection:
                return connection.execute(statement).scalar()
        except SQLAlchemyError as exc:
            raise wrap_sql_error(exc, self.engine, "doctor") from exc

    def _column(self, statement: Any) -> list[Any]:
        try:
            with self.repository._bounded_connection("stats") as connection:
                return list(connection.execute(statement).scalars())
        except SQLAlchemyError as exc:
            raise wrap_sql_error(exc, self.engine, "stats") from exc
