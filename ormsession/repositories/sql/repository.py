"""The synchronous SQL repository (PostgreSQL, MySQL/MariaDB, SQLite) on SQLAlchemy Core."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Row
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from ormsession.repositories.base import StoredSession
from ormsession.repositories.sql.errors import wrap_sql_error
from ormsession.repositories.sql.model import DEFAULT_TABLE_NAME, session_table
from ormsession.repositories.sql.statements import SqlStatements

__all__ = ["SqlRepository", "row_to_record"]

T = TypeVar("T")


def row_to_record(row: Row[Any] | None) -> StoredSession | None:
    if row is None:
        return None
    data, version, created_at, expires_at = tuple(row)
    # psycopg2 hands bytea back as memoryview
    return StoredSession(bytes(data), int(version), created_at, expires_at)


class SqlRepository:
    """Sessions in one SQL table, one statement (one round trip) per operation.

    Give it the app's ``Engine`` to share its pool: the repository then runs each statement
    in its own short transaction on a pooled connection, never touches the app's ORM
    sessions or transactions, and never disposes the engine. :meth:`from_url` builds an
    engine it owns (autocommit, timeouts) and disposes it on :meth:`close`.
    """

    native_ttl = False

    def __init__(
        self,
        engine: Engine,
        *,
        table_name: str = DEFAULT_TABLE_NAME,
        owns_engine: bool = False,
        autocommit: bool = False,
        schema_check: bool = True,
    ) -> None:
        self.engine = engine
        self.table = session_table(table_name)
        self._sql = SqlStatements.build(self.table, engine.dialect.name)
        self._owns_engine = owns_engine
        self._autocommit = autocommit
        if schema_check:
            from ormsession.schema import check_schema

            check_schema(engine, table_name=table_name)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        table_name: str = DEFAULT_TABLE_NAME,
        connect_timeout: float = 5.0,
        pool_size: int | None = None,
        schema_check: bool = True,
        auto_migrate: bool = False,
    ) -> SqlRepository:
        from ormsession.repositories.sql.engine import create_session_engine

        engine = create_session_engine(url, connect_timeout=connect_timeout, pool_size=pool_size)
        try:
            if auto_migrate:
                from ormsession.schema import upgrade

                upgrade(engine, table_name=table_name)
            return cls(
                engine,
                table_name=table_name,
                owns_engine=True,
                autocommit=True,
                schema_check=schema_check,
            )
        except BaseException:
            engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"<SqlRepository {self.engine.url.render_as_string(hide_password=True)}>"

    # -- the contract ---------------------------------------------------------------
    def read(self, key: str, now: datetime) -> StoredSession | None:
        return self._run(
            "read",
            lambda c: row_to_record(c.execute(self._sql.read, {"key": key, "now": now}).first()),
        )

    def create(self, key: str, record: StoredSession, now: datetime) -> bool:
        values = {
            "session_key": key,
            "session_data": record.data,
            "session_version": record.version,
            "session_created": record.created_at,
            "session_expiry": record.expires_at,
        }
        if self._insert(values):
            return True
        # The key is taken. Only an expired row may be replaced (the contract: expired
        # records never block); a live one means the caller must pick another key.
        reclaimed = self._run(
            "create",
            lambda c: c.execute(self._sql.reclaim_expired_key, {"key": key, "now": now}).rowcount,
        )
        return bool(reclaimed) and self._insert(values)

    def _insert(self, values: dict[str, Any]) -> bool:
        try:
            self._run("create", lambda c: c.execute(self._sql.insert, values))
        except IntegrityError:
            return False
        return True

    def update(
        self, key: str, data: bytes, expires_at: datetime, expected_version: int, now: datetime
    ) -> int | None:
        params = {
            "key": key,
            "now": now,
            "data": data,
            "expires_at": expires_at,
            "expected_version": expected_version,
        }
        changed = self._run("update", lambda c: c.execute(self._sql.update, params).rowcount)
        return expected_version + 1 if changed == 1 else None

    def touch(self, key: str, expires_at: datetime, now: datetime) -> bool:
        params = {"key": key, "now": now, "expires_at": expires_at}
        return self._run("touch", lambda c: c.execute(self._sql.touch, params).rowcount) == 1

    def delete(self, key: str) -> None:
        self._run("delete", lambda c: c.execute(self._sql.delete, {"key": key}))

    def rename(self, old_key: str, new_key: str, expires_at: datetime, now: datetime) -> bool:
        # One UPDATE of the primary key: atomic, no window where both or neither key exists.
        params = {"key": old_key, "new_key": new_key, "now": now, "expires_at": expires_at}
        return self._run("rename", lambda c: c.execute(self._sql.rename, params).rowcount) == 1

    def count(self, now: datetime) -> int:
        statement = self._sql.count
        return self._run("count", lambda c: int(c.execute(statement, {"now": now}).scalar_one()))

    def count_expired(self, now: datetime) -> int:
        """How many expired rows gc would delete (beyond the contract: for progress bars)."""
        statement = self._sql.count_expired
        return self._run("count", lambda c: int(c.execute(statement, {"now": now}).scalar_one()))

    def delete_expired(self, now: datetime, limit: int) -> int:
        statement = self._sql.delete_expired(limit)
        return self._run("gc", lambda c: c.execute(statement, {"now": now}).rowcount)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    # -- plumbing -------------------------------------------------------------------
    def _connect(self) -> AbstractContextManager[Connection]:
        # Our own engine is autocommit: one statement, no BEGIN/COMMIT. An app's engine
        # keeps its isolation level; each call gets its own short transaction.
        return self.engine.connect() if self._autocommit else self.engine.begin()

    def _run(self, operation: str, work: Callable[[Connection], T]) -> T:
        """Run ``work`` on a pooled connection; retry once on a connection the pool found
        dead (a restarted database), and wrap driver errors into ormsession's."""
        retried = False
        while True:
            try:
                with self._connect() as connection:
                    return work(connection)
            except DBAPIError as exc:
                if isinstance(exc, IntegrityError) and operation == "create":
                    raise  # create() reads a duplicate key as "taken", not as a failure
                if exc.connection_invalidated and not retried:
                    retried = True
                    continue
                raise wrap_sql_error(exc, self.engine, operation) from exc
            except SQLAlchemyError as exc:
                raise wrap_sql_error(exc, self.engine, operation) from exc
