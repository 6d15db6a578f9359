"""The synchronous SQL repository (PostgreSQL, MySQL/MariaDB, SQLite) on SQLAlchemy Core."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from ormsession.errors import OrmsessionError, StoreError
from ormsession.flows import run
from ormsession.repositories.base import OwnedSession, Owner, SessionRepository, StoredSession
from ormsession.repositories.sql import moves
from ormsession.repositories.sql.dbapi import (
    DBAPI_DRIVERS,
    RawResult,
    StatementCache,
    record_reader,
    watches_executions,
)
from ormsession.repositories.sql.deadlines import operation_deadline, statement_bound
from ormsession.repositories.sql.errors import (
    MAX_PACKET_QUERY,
    MIN_PACKET_LIMIT,
    as_sqlalchemy_error,
    bytes_sent_by,
    conflict_pause,
    lock_conflict,
    packet_too_large,
    payload_size,
    server_packet_error,
    timed_out,
    unencodable_text,
    wrap_sql_error,
)
from ormsession.repositories.sql.model import DEFAULT_TABLE_NAME, session_table
from ormsession.repositories.sql.statements import BUFFERED, Query, SqlQueries
from ormsession.repositories.sql.urls import display_sql_url

if TYPE_CHECKING:
    from ormsession.repositories.sql.diagnostics import SqlDiagnostics

__all__ = ["SqlRepository"]

T = TypeVar("T")


class SqlRepository(SessionRepository):
    """Sessions in one SQL table, one statement (one round trip) per operation but rename
    and delete (a few, see :mod:`.moves`).

    Give it the app's ``Engine`` to share its pool: the repository then runs each statement
    in its own short transaction on a pooled connection, never touches the app's ORM
    sessions or transactions, and never disposes the engine. :meth:`from_url` builds an
    engine it owns (autocommit, timeouts) and disposes it on :meth:`close`.

    Each operation ends within ``timeout`` seconds, retry included, or raises
    :class:`~ormsession.errors.StoreUnavailableError` (see :mod:`.deadlines`; on an app's
    engine the pool wait and connecting follow the engine's own settings).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        table_name: str = DEFAULT_TABLE_NAME,
        owns_engine: bool = False,
        autocommit: bool = False,
        schema_check: bool = True,
        timeout: float = 5.0,
    ) -> None:
        self.engine = engine
        self.timeout = timeout
        self.table = session_table(table_name)
        self._queries = SqlQueries(self.table, engine.dialect.name)
        self._owns_engine = owns_engine
        self._autocommit = autocommit
        dialect = engine.dialect
        # Known drivers skip SQLAlchemy's per-call execution layer (see dbapi.py), unless
        # the app listens to the engine's executions, which only that layer reports.
        self._raw = (dialect.name, dialect.driver) in DBAPI_DRIVERS and not watches_executions(
            engine
        )
        self._statements = StatementCache(engine.dialect)
        self._read_compiled = self._statements[self._queries.read_statement]
        self._read_parameters = self._read_compiled.key_and_time_parameters()
        self._read_row = record_reader(dialect)
        # The driver's base error class (typed Any, as SQLAlchemy's loaded_dbapi is).
        self._dbapi_error: Any = dialect.loaded_dbapi.Error if self._raw else Exception
        self._bound = statement_bound(dialect, own_engine=owns_engine, timeout=timeout)
        self._packet_limited = dialect.name in ("mysql", "mariadb")
        self._bytes_sent = bytes_sent_by(dialect)
        if schema_check:
            from ormsession.schema import check_schema

            with self._bounded_connection("schema check") as connection:
                check_schema(connection, table_name=table_name)

    @property
    def store_kind(self) -> str:
        """The SQL dialect: ``postgresql``, ``mysql``, ``mariadb`` or ``sqlite``."""
        return str(self.engine.dialect.name)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        table_name: str = DEFAULT_TABLE_NAME,
        timeout: float = 5.0,
        pool_size: int | None = None,
        schema_check: bool = True,
        auto_migrate: bool = False,
    ) -> SqlRepository:
        from ormsession.repositories.sql.clients import create_session_engine

        engine = create_session_engine(url, timeout=timeout, pool_size=pool_size)
        try:
            if auto_migrate:
                from ormsession.schema import upgrade

                upgrade(engine, table_name=table_name, timeout=timeout)
            return cls(
                engine,
                table_name=table_name,
                owns_engine=True,
                autocommit=True,
                schema_check=schema_check,
                timeout=timeout,
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

    def create(
        self, key: str, record: StoredSession, now_us: int, owner_until_us: int | None = None
    ) -> bool:
        # owner_until_us is for stores whose index expires: here the index is a column.
        if self._insert(key, record, now_us):
            return True
        # The key is taken. Only an expired row may be replaced (the contract: expired
        # records never block); a live one means the caller must pick another key.
        return self._execute(self._queries.reclaim_expired_key(key, now_us)) and self._insert(
            key, record, now_us
        )

    def _insert(self, key: str, record: StoredSession, now_us: int) -> bool:
        try:
            self._execute(self._queries.insert(key, record, now_us))
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

    def rename(
        self,
        old_key: str,
        new_key: str,
        expires_us: int,
        now_us: int,
        owner: Owner | None = None,
        owner_until_us: int | None = None,
        data: bytes | None = None,
        expected_version: int | None = None,
    ) -> bool:
        # owner_until_us is for stores whose index expires: here the index is a column.
        flow = moves.rename(
            self._queries, old_key, new_key, expires_us, now_us, owner, data, expected_version
        )
        return run(flow, self._execute)

    def moved(self, key: str, now_us: int) -> bool:
        return self._execute(self._queries.moved(key, now_us))

    def sessions_of(self, user_id: str, now_us: int) -> list[OwnedSession]:
        return self._execute(self._queries.sessions_of(user_id, now_us))

    def revoke(self, user_id: str, handle: str, now_us: int) -> bool:
        flow = moves.revoke(self._queries, "revoke", user_id, handle, None, now_us)
        return bool(run(flow, self._execute))

    def revoke_all(self, user_id: str, keep_key: str | None, now_us: int) -> int:
        flow = moves.revoke(self._queries, "revoke_all", user_id, None, keep_key, now_us)
        return run(flow, self._execute)

    def count(self, now_us: int) -> int:
        return self._execute(self._queries.count(now_us))

    def count_expired(self, now_us: int) -> int:
        """How many expired rows gc would delete (beyond the contract: for progress bars)."""
        return self._execute(self._queries.count_expired(now_us))

    def delete_expired(self, now_us: int, limit: int) -> int:
        return self._execute(self._queries.delete_expired(now_us, limit))

    def gc_lock(self) -> AbstractContextManager[bool]:
        """The lock one gc run holds (beyond the contract: see :mod:`.gc_lock`)."""
        from ormsession.repositories.sql.gc_lock import gc_lock

        return gc_lock(self.engine, self.table.name)

    def diagnostics(self) -> SqlDiagnostics:
        """What ``ormsession stats`` and ``doctor`` ask (beyond the contract)."""
        from ormsession.repositories.sql.diagnostics import SqlDiagnostics

        return SqlDiagnostics(self)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    # -- plumbing -------------------------------------------------------------------
    def _connect(self) -> AbstractContextManager[Connection]:
        # Our own engine is autocommit: one statement, no BEGIN/COMMIT. An app's engine
        # keeps its isolation level; each call gets its own short transaction.
        return self.engine.connect() if self._autocommit else self.engine.begin()

    @contextmanager
    def _bounded_connection(self, operation: str) -> Iterator[Connection]:
        """A connection for several statements that together make one operation (the
        schema check), all of it within the deadline."""
        with operation_deadline(self.timeout) as deadline:
            try:
                with self.engine.connect().execution_options(**BUFFERED) as connection:
                    raw = connection.connection.dbapi_connection
                    state = self._bound.start(raw, deadline)
                    try:
                        yield connection
                    finally:
                        if self._bound.finish(raw, state):
                            connection.invalidate()
            except (SQLAlchemyError, StoreError) as exc:
                if time.monotonic() >= deadline:
                    raise timed_out(exc, self.engine.url, operation, self.timeout) from exc
                if isinstance(exc, SQLAlchemyError):
                    raise wrap_sql_error(exc, self.engine, operation) from exc
                raise

    def _execute(self, query: Query[T]) -> T:
        """Run one query on a pooled connection; retry once on a connection the pool found
        dead (a restarted database), and after each lock conflict (see
        :func:`.errors.lock_conflict`); wrap driver errors into ormsession's. All of it
        ends by the operation's deadline."""
        if self._raw:
            return self._execute_raw(query)
        with operation_deadline(self.timeout) as deadline:
            retried, conflicts = False, list[BaseException]()
            while True:
                started = time.monotonic()
                try:
                    with self._connect() as connection:
                        return query.extract(
                            connection.execute(
                                query.statement, query.params, execution_options=BUFFERED
                            )
                        )
                except DBAPIError as exc:
                    if isinstance(exc, IntegrityError) and query.operation == "create":
                        raise  # create() reads a duplicate key as "taken", not as a failure
                    late = time.monotonic() >= deadline
                    if exc.connection_invalidated and not retried and not late:
                        retried = True
                        continue
                    if lock_conflict(exc) and not late:
                        conflicts.append(exc)
                        if _paused(len(conflicts), deadline, time.monotonic() - started):
                            continue
                        late = True  # no time for another try: the conflict timed it out
                    raise self._failure(exc, query.operation, late, conflicts) from exc
                except SQLAlchemyError as exc:
                    late = time.monotonic() >= deadline
                    raise self._failure(exc, query.operation, late, conflicts) from exc
                except UnicodeError as exc:
                    raise unencodable_text(exc, self.engine.url, query.operation) from exc

    def _failure(
        self,
        exc: SQLAlchemyError,
        operation: str,
        late: bool,
        conflicts: Sequence[BaseException] = (),
    ) -> OrmsessionError:
        """``exc`` as ormsession's error; ``late``: it ended the operation at its deadline,
        for which, after lock conflicts, the last one is the reason (the try after it may
        have been cut by the deadline)."""
        if late:
            cause = conflicts[-1] if conflicts else exc
            return timed_out(cause, self.engine.url, operation, self.timeout)
        return wrap_sql_error(exc, self.engine, operation)

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
        cursor (the same retry, deadline and error wrapping as :meth:`_execute`)."""
        with operation_deadline(self.timeout) as deadline:
            retry_dead, conflicts = True, list[BaseException]()
            while True:
                started = time.monotonic()
                try:
                    return self._attempt(
                        operation,
                        sql,
                        params,
                        extract,
                        deadline,
                        retry=retry_dead,
                        conflicts=conflicts,
                    )
                except _DeadConnectionError as retry:
                    self._refuse_oversized(operation, sql, params, deadline, retry)
                    retry_dead = False
                except _LockConflictError as conflict:
                    conflicts.append(conflict.__cause__ or conflict)
                    if not _paused(len(conflicts), deadline, time.monotonic() - started):
                        cause = conflicts[-1]
                        raise timed_out(cause, self.engine.url, operation, self.timeout) from cause

    def _attempt(
        self,
        operation: str,
        sql: str,
        params: Sequence[Any] | dict[str, Any],
        extract: Callable[[Any], T],
        deadline: float,
        *,
        retry: bool,
        conflicts: Sequence[BaseException] = (),
    ) -> T:
        """One try of :meth:`_run_raw`. With ``retry``, a connection found dead in time
        raises :class:`_DeadConnectionError` (one more try is worth it: a restarted database);
        a lock conflict in time raises :class:`_LockConflictError`. ``conflicts``: those
        the earlier tries met (see :meth:`_failure`)."""
        dialect = self.engine.dialect
        dbapi_error = self._dbapi_error
        try:
            connection = self.engine.raw_connection()
        except (SQLAlchemyError, dbapi_error) as exc:
            # raw_connection() leaves the driver's connect errors unwrapped.
            wrapped = exc if isinstance(exc, SQLAlchemyError) else as_sqlalchemy_error(exc, dialect)
            late = time.monotonic() >= deadline
            raise self._failure(wrapped, operation, late, conflicts) from exc
        raw: Any = connection.dbapi_connection
        bound = self._bound
        state = bound.start(raw, deadline)
        cursor = None
        try:
            cursor = raw.cursor()  # the DBAPI connection's own (the pool's proxy only forwards)
            cursor.execute(sql, params)
            result = extract(cursor)
            if not self._autocommit:
                connection.commit()
            return result
        except dbapi_error as exc:
            cut = bound.finish(raw, state)
            state = _FINISHED
            late = cut or time.monotonic() >= deadline
            disconnected = dialect.is_disconnect(exc, raw, cursor)
            dead = late or disconnected or packet_too_large(exc)
            if disconnected and not cut:
                # The server went away (a restart, a failover): every connection the pool
                # made before now is as dead, so the retry gets a new one, not the next
                # stale one (SQLAlchemy's own execution path does the same). A connection
                # the deadline cut is not that: it alone is dropped.
                self.engine.pool._invalidate(connection, exc)
            elif dead:
                connection.invalidate(exc)
            elif not self._autocommit:
                self._roll_back(connection, raw, deadline)
            wrapped = as_sqlalchemy_error(exc, dialect)
            if isinstance(wrapped, IntegrityError) and operation == "create":
                raise wrapped from exc
            if dead and not late and retry:
                raise _DeadConnectionError from exc
            if not dead and lock_conflict(exc):
                raise _LockConflictError from exc
            raise self._failure(wrapped, operation, late, conflicts) from exc
        except UnicodeError as exc:  # the driver encoding a parameter: nothing was sent
            cut = bound.finish(raw, state)
            state = _FINISHED
            if cut:
                connection.invalidate()
            elif not self._autocommit:
                self._roll_back(connection, raw, deadline)
            raise unencodable_text(exc, self.engine.url, operation) from exc
        finally:
            if state is not _FINISHED and bound.finish(raw, state):
                connection.invalidate()  # cut at the deadline just as the statement ended
            if cursor is not None:
                with suppress(dbapi_error):  # a cursor of a connection discarded above
                    cursor.close()
            connection.close()

    def _roll_back(self, connection: Any, raw: Any, deadline: float) -> None:
        """End the transaction a failed statement opened on an app's connection before it
        goes back to the pool: an app's pool may not reset connections on return
        (``pool_reset_on_return=None``), and PostgreSQL refuses every later statement in an
        aborted transaction (MySQL keeps its locks). Within the operation's deadline, as
        the statement was: a connection whose rollback fails or is cut there is dropped."""
        state = self._bound.start(raw, deadline)
        try:
            connection.rollback()
        except self._dbapi_error:
            self._bound.finish(raw, state)
            connection.invalidate()
        else:
            if self._bound.finish(raw, state):
                connection.invalidate()  # cut at the deadline just as the rollback ended

    def _refuse_oversized(
        self,
        operation: str,
        sql: str,
        params: Sequence[Any] | dict[str, Any],
        deadline: float,
        retry: _DeadConnectionError,
    ) -> None:
        """MySQL drops the connection of a client that sends a packet over the server's
        ``max_allowed_packet``, which looks like an outage: before sending it again, ask
        the server for its limit, and refuse a statement over it for what it is."""
        size = payload_size(sql, params, self._bytes_sent)
        if not self._packet_limited or size < MIN_PACKET_LIMIT:
            return
        limit = self._attempt(operation, MAX_PACKET_QUERY, (), _first_int, deadline, retry=False)
        if size >= limit:
            raise server_packet_error(size, limit) from retry.__cause__


def _first_int(cursor: Any) -> int:
    return int(cursor.fetchone()[0])


#: A statement bound already finished (in the error path).
_FINISHED = object()


class _DeadConnectionError(Exception):
    """The connection was found dead in time: try once more on another."""


class _LockConflictError(Exception):
    """The server rolled the statement back to end a lock conflict: run it again."""


def _paused(attempt: int, deadline: float, took: float) -> bool:
    """Wait before running again a statement a lock conflict ended; False, without
    waiting, when the pause and another try as long as the last one (``took`` seconds)
    would reach the deadline: that try would only be cut there."""
    pause = conflict_pause(attempt)
    if time.monotonic() + pause + took >= deadline:
        return False
    time.sleep(pause)
    return True
