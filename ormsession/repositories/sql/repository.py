"""The synchronous SQL repository (PostgreSQL, MySQL/MariaDB, SQLite) on SQLAlchemy Core."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from ormsession.flows import run
from ormsession.repositories.base import SessionRepository, StoredSession
from ormsession.repositories.sql import moves
from ormsession.repositories.sql.dbapi import (
    DBAPI_DRIVERS,
    RawResult,
    StatementCache,
    record_reader,
)
from ormsession.repositories.sql.errors import as_sqlalchemy_error, wrap_sql_error
from ormsession.repositories.sql.model import DEFAULT_TABLE_NAME, session_table
from ormsession.repositories.sql.statements import Query, SqlQueries
from ormsession.repositories.sql.urls import display_sql_url

__all__ = ["SqlRepository"]

T = TypeVar("T")


class SqlRepository(SessionRepository):
    """Sessions in one SQL table, one statement (one round trip) per operation but rename
    and delete (a few, see :mod:`.moves`).

    Give it the app's ``Engine`` to share its pool: the repository then runs each statement
    in its own short transaction on a pooled connection, never touches the app's ORM
    sessions or transactions, and never disposes the engine. :meth:`from_url` builds an
    engine it owns (autocommit, timeouts) and disposes it on :meth:`close`.
    """

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
        self._queries = SqlQueries(self.table, engine.dialect.name)
        self._owns_engine = owns_engine
        self._autocommit = autocommit
        dialect = engine.dialect
        # Known drivers skip SQLAlchemy's per-call execution layer (see dbapi.py).
        self._raw = (dialect.name, dialect.driver) in DBAPI_DRIVERS
        self._statements = StatementCache(engine.dialect)
        self._read_compiled = self._statements[self._queries.read_statement]
        self._read_parameters = self._read_compiled.key_and_time_parameters()
        self._read_row = record_reader(dialect)
        # The driver's base error class (typed Any, as SQLAlchemy's loaded_dbapi is).
        self._dbapi_error: Any = dialect.loaded_dbapi.Error if self._raw else Exception
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
        from ormsession.repositories.sql.clients import create_session_engine

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
        return f"<SqlRepository {display_sql_url(self.engine.url)}>"

    # -- the contract ---------------------------------------------------------------
    def read(self, key: str, now_us: int) -> StoredSession | None:
        if self._raw:
            # Every request's statement: no Query object, no result wrapper.
            compiled = self._read_compiled
            params = self._read_parameters(key, now_us)
            return self._run_raw("read", compiled.sql, params, self._read_row)
        return self._execute(self._queries.read(key, now_us))

    def create(self, key: str, record: StoredSession, now_us: int) -> bool:
        if self._insert(key, record):
            return True
        # The key is taken. Only an expired row may be replaced (the contract: expired
        # records never block); a live one means the caller must pick another key.
        return self._execute(self._queries.reclaim_expired_key(key, now_us)) and self._insert(
            key, record
        )

    def _insert(self, key: str, record: StoredSession) -> bool:
        try:
            self._execute(self._queries.insert(key, record))
        except IntegrityError:
            return False
        return True

    def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        query = self._queries.update(key, data, expires_us, expected_version, now_us)
        return expected_version + 1 if self._execute(query) else None

    def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        return self._execute(self._queries.touch(key, expires_us, now_us))

    def delete(self, key: str) -> None:
        run(moves.delete(self._queries, key), self._execute)

    def rename(self, old_key: str, new_key: str, expires_us: int, now_us: int) -> bool:
        flow = moves.rename(self._queries, old_key, new_key, expires_us, now_us)
        return run(flow, self._execute)

    def moved(self, key: str, now_us: int) -> bool:
        return self._execute(self._queries.moved(key, now_us))

    def count(self, now_us: int) -> int:
        return self._execute(self._queries.count(now_us))

    def count_expired(self, now_us: int) -> int:
        """How many expired rows gc would delete (beyond the contract: for progress bars)."""
        return self._execute(self._queries.count_expired(now_us))

    def delete_expired(self, now_us: int, limit: int) -> int:
        return self._execute(self._queries.delete_expired(now_us, limit))

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    # -- plumbing -------------------------------------------------------------------
    def _connect(self) -> AbstractContextManager[Connection]:
        # Our own engine is autocommit: one statement, no BEGIN/COMMIT. An app's engine
        # keeps its isolation level; each call gets its own short transaction.
        return self.engine.connect() if self._autocommit else self.engine.begin()

    def _execute(self, query: Query[T]) -> T:
        """Run one query on a pooled connection; retry once on a connection the pool found
        dead (a restarted database); wrap driver errors into ormsession's."""
        if self._raw:
            return self._execute_raw(query)
        retried = False
        while True:
            try:
                with self._connect() as connection:
                    return query.extract(connection.execute(query.statement, query.params))
            except DBAPIError as exc:
                if isinstance(exc, IntegrityError) and query.operation == "create":
                    raise  # create() reads a duplicate key as "taken", not as a failure
                if exc.connection_invalidated and not retried:
                    retried = True
                    continue
                raise wrap_sql_error(exc, self.engine, query.operation) from exc
            except SQLAlchemyError as exc:
                raise wrap_sql_error(exc, self.engine, query.operation) from exc

    def _execute_raw(self, query: Query[T]) -> T:
        """:meth:`_execute` on a DBAPI cursor from the engine's pool (see dbapi.py)."""
        compiled = self._statements[query.statement]
        params = compiled.parameters(query.params)

        def extract(cursor: Any) -> T:
            return query.extract(RawResult(cursor))

        return self._run_raw(query.operation, compiled.sql, params, extract)

    def _run_raw(
        self,
        operation: str,
        sql: str,
        params: Sequence[Any] | dict[str, Any],
        extract: Callable[[Any], T],
    ) -> T:
        """Run one statement on a cursor from the pool, ``extract`` its result from the
        cursor (the same retry and error wrapping as :meth:`_execute`)."""
        dialect = self.engine.dialect
        dbapi_error = self._dbapi_error
        retried = False
        while True:
            try:
                connection = self.engine.raw_connection()
            except SQLAlchemyError as exc:
                raise wrap_sql_error(exc, self.engine, operation) from exc
            except dbapi_error as exc:  # raw_connection() does not wrap connect errors
                raise wrap_sql_error(
                    as_sqlalchemy_error(exc, dialect), self.engine, operation
                ) from exc
            cursor = None
            try:
                cursor = connection.cursor()
                cursor.execute(sql, params)
                result = extract(cursor)
                if not self._autocommit:
                    connection.commit()
                return result
            except dbapi_error as exc:
                if dialect.is_disconnect(exc, connection.dbapi_connection, cursor):
                    connection.invalidate(exc)
                    if not retried:
                        retried = True
                        continue
                wrapped = as_sqlalchemy_error(exc, dialect)
                if isinstance(wrapped, IntegrityError) and operation == "create":
                    raise wrapped from exc
                raise wrap_sql_error(wrapped, self.engine, operation) from exc
            finally:
                if cursor is not None:
                    cursor.close()
                connection.close()
