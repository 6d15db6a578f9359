"""The asyncio SQL repository: the same queries as :class:`SqlRepository`, awaited.

PostgreSQL via asyncpg, MySQL/MariaDB via asyncmy (aiomysql breaks every bytes parameter
with PyMySQL 1.2), SQLite via aiosqlite, all through SQLAlchemy's asyncio extension.

Each operation runs under ``asyncio.timeout(timeout)``: the pool wait, connecting, the
handshake, the statement and a retry are all awaits, so the deadline cancels whichever is
running, and a connection cancelled mid-statement is discarded, never pooled again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import PoolProxiedConnection, Select
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.util import await_only, greenlet_spawn

from ormsession.errors import StoreError, StoreUnavailableError
from ormsession.flows import arun
from ormsession.repositories.base import (
    AsyncSessionRepository,
    OwnedSession,
    Owner,
    StoredSession,
)
from ormsession.repositories.sql import moves
from ormsession.repositories.sql.async_dbapi import AsyncDriver, driver_for
from ormsession.repositories.sql.bridge import spawn
from ormsession.repositories.sql.dbapi import StatementCache, watches_executions
from ormsession.repositories.sql.errors import (
    MAX_PACKET_QUERY,
    MIN_PACKET_LIMIT,
    conflict_pause,
    lock_conflict,
    login_refused,
    login_refused_message,
    payload_size,
    server_packet_error,
    timed_out,
    unencodable_text,
    wrap_sql_error,
)
from ormsession.repositories.sql.model import DEFAULT_TABLE_NAME, session_table
from ormsession.repositories.sql.statements import BUFFERED, Query, SqlQueries, row_reader
from ormsession.repositories.sql.urls import display_sql_url
from ormsession.urls import scrub

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["AsyncSqlRepository"]

T = TypeVar("T")


class AsyncSqlRepository(AsyncSessionRepository):
    """Sessions in one SQL table over an ``AsyncEngine``, one statement per operation but
    rename and delete (a few, see :mod:`.moves`).

    Start-up work (the schema check, migrations when asked) needs I/O, so it runs in
    :meth:`start`, which :func:`ormsession.configure_async` awaits.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        table_name: str = DEFAULT_TABLE_NAME,
        owns_engine: bool = False,
        autocommit: bool = False,
        schema_check: bool = True,
        auto_migrate: bool = False,
        timeout: float = 5.0,
    ) -> None:
        self.engine = engine
        self.timeout = timeout
        self.table_name = table_name
        self.table = session_table(table_name)
        self._queries = SqlQueries(self.table, engine.dialect.name)
        self._owns_engine = owns_engine
        self._autocommit = autocommit
        self._schema_check = schema_check
        self._auto_migrate = auto_migrate
        # Known drivers skip SQLAlchemy's asyncio execution layer (see async_dbapi.py),
        # unless the app listens to the engine's executions (see dbapi.watches_executions)
        # and the layer binds the driver's parameters safely.
        driver = driver_for(engine.dialect.driver)
        if driver is not None and driver.binds_safely_in_sqlalchemy:
            driver = None if watches_executions(engine.sync_engine) else driver
        self._driver = driver
        self._statements = StatementCache(engine.dialect)
        self._read_compiled = self._statements[self._queries.read_statement]
        self._read_parameters = self._read_compiled.key_and_time_parameters()
        self._read_row = row_reader(engine.dialect.name)
        # The driver's base error class, as SQLAlchemy's asyncio adapter raises it.
        self._dbapi_error: Any = engine.dialect.loaded_dbapi.Error
        self._packet_limited = engine.dialect.name in ("mysql", "mariadb")

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
    ) -> AsyncSqlRepository:
        from ormsession.repositories.sql.clients import create_async_session_engine

        engine = create_async_session_engine(url, timeout=timeout, pool_size=pool_size)
        return cls(
            engine,
            table_name=table_name,
            owns_engine=True,
            autocommit=True,
            schema_check=schema_check,
            auto_migrate=auto_migrate,
            timeout=timeout,
        )

    async def start(self) -> None:
        """Migrate (when asked) and check the schema, on a worker-free sync bridge: within
        the timeout, or :data:`~ormsession.schema.MIGRATION_TIMEOUT` with migrations."""
        if not (self._auto_migrate or self._schema_check):
            return
        from ormsession.schema import MIGRATION_TIMEOUT, check_schema, upgrade

        table_name = self.table_name

        def prepare(connection: Any) -> None:
            if self._auto_migrate:
                upgrade(connection, table_name=table_name)
                connection.commit()
            if self._schema_check:
                check_schema(connection, table_name=table_name)

        limit = MIGRATION_TIMEOUT if self._auto_migrate else self.timeout
        try:
            async with asyncio.timeout(limit):
                await self._prepare(prepare)
        except TimeoutError as exc:  # the deadline's: the others are wrapped inside
            raise timed_out(exc, self.engine.url, "start-up", limit) from exc

    async def _prepare(self, prepare: Callable[[Any], None]) -> None:
        try:
            async with self.engine.connect() as connection:
                isolation = connection.sync_connection.default_isolation_level  # type: ignore[union-attr]
                connection = await connection.execution_options(
                    isolation_level=isolation or "AUTOCOMMIT", **BUFFERED
                )
                await connection.run_sync(prepare)
        except SQLAlchemyError as exc:
            raise wrap_sql_error(exc, self.engine.sync_engine, "start-up") from exc
        except self._driver_errors as exc:
            raise self._classified(exc, "start-up") from exc

    def __repr__(self) -> str:
        return f"<AsyncSqlRepository {display_sql_url(self.engine.url)}>"

    # -- the contract ---------------------------------------------------------------
    async def read(self, key: str, now_us: int) -> StoredSession | None:
        driver = self._driver
        if driver is None:
            return await self._execute(self._queries.read(key, now_us))
        # Every request's statement: no Query object, no result wrapper (as the sync twin).
        compiled = self._read_compiled
        params = self._read_parameters(key, now_us)
        row = await self._on_raw_connection(
            "read", driver, lambda raw: driver.fetch_row(raw, compiled.sql, params)
        )
        return self._read_row(row)

    async def create(
        self, key: str, record: StoredSession, now_us: int, owner_until_us: int | None = None
    ) -> bool:
        # owner_until_us is for stores whose index expires: here the index is a column.
        if await self._insert(key, record, now_us):
            return True
        # Only an expired row may be replaced; a live one means "pick another key".
        return await self._execute(
            self._queries.reclaim_expired_key(key, now_us)
        ) and await self._insert(key, record, now_us)

    async def _insert(self, key: str, record: StoredSession, now_us: int) -> bool:
        try:
            await self._execute(self._queries.insert(key, record, now_us))
        except IntegrityError:
            return False
        return True

    async def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        query = self._queries.update(key, data, expires_us, expected_version, now_us)
        return expected_version + 1 if await self._execute(query) else None

    async def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        return await self._execute(self._queries.touch(key, expires_us, now_us))

    async def delete(self, key: str) -> None:
        await arun(moves.delete(self._queries, key), self._execute)

    async def rename(
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
        return await arun(flow, self._execute)

    async def moved(self, key: str, now_us: int) -> bool:
        return await self._execute(self._queries.moved(key, now_us))

    async def sessions_of(self, user_id: str, now_us: int) -> list[OwnedSession]:
        return await self._execute(self._queries.sessions_of(user_id, now_us))

    async def revoke(self, user_id: str, handle: str, now_us: int) -> bool:
        flow = moves.revoke(self._queries, "revoke", user_id, handle, None, now_us)
        return bool(await arun(flow, self._execute))

    async def revoke_all(self, user_id: str, keep_key: str | None, now_us: int) -> int:
        flow = moves.revoke(self._queries, "revoke_all", user_id, None, keep_key, now_us)
        return await arun(flow, self._execute)

    async def count(self, now_us: int) -> int:
        return await self._execute(self._queries.count(now_us))

    async def count_expired(self, now_us: int) -> int:
        return await self._execute(self._queries.count_expired(now_us))

    async def delete_expired(self, now_us: int, limit: int) -> int:
        return await self._execute(self._queries.delete_expired(now_us, limit))

    def gc_lock(self) -> AbstractAsyncContextManager[bool]:
        """The lock one gc run holds (beyond the contract: see :mod:`.gc_lock`)."""
        from ormsession.repositories.sql.gc_lock import async_gc_lock

        return async_gc_lock(self.engine, self.table_name)

    async def close(self) -> None:
        if self._owns_engine:
            await self.engine.dispose()

    # -- plumbing -------------------------------------------------------------------
    async def _execute(self, query: Query[T]) -> T:
        if self._driver is not None:
            return await self._execute_raw(query, self._driver)
        conflicts: list[BaseException] = []
        try:
            async with asyncio.timeout(self.timeout) as deadline:
                return await self._execute_on_connection(query, deadline, conflicts)
        except TimeoutError as exc:  # the deadline's: the others are wrapped inside
            raise self._timed_out(exc, query.operation, conflicts) from exc

    async def _execute_on_connection(
        self, query: Query[T], deadline: asyncio.Timeout, conflicts: list[BaseException]
    ) -> T:
        """:meth:`_execute` through SQLAlchemy's ``AsyncConnection`` (drivers the
        repository does not run directly), retried once on a connection found dead, and
        after each lock conflict (:func:`.errors.lock_conflict`)."""
        retried = False
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                async with self.engine.connect() as connection:
                    return await self._in_transaction(connection, query)
            except DBAPIError as exc:
                if isinstance(exc, IntegrityError) and query.operation == "create":
                    raise
                if exc.connection_invalidated and not retried:
                    retried = True
                    continue
                if lock_conflict(exc):
                    conflicts.append(exc)
                    if await _paused(len(conflicts), deadline, loop.time() - started):
                        continue
                    raise self._timed_out(exc, query.operation, conflicts) from exc
                raise wrap_sql_error(exc, self.engine.sync_engine, query.operation) from exc
            except SQLAlchemyError as exc:
                raise wrap_sql_error(exc, self.engine.sync_engine, query.operation) from exc
            except UnicodeError as exc:
                raise unencodable_text(exc, self.engine.url, query.operation) from exc
            except (OSError, TimeoutError) as exc:
                # asyncpg lets connect-time socket errors through unwrapped.
                raise self._unreachable(exc, query.operation) from exc

    async def _execute_raw(self, query: Query[T], driver: AsyncDriver) -> T:
        """:meth:`_execute` on the driver's own connection, from the engine's pool."""
        compiled = self._statements[query.statement]
        params = compiled.parameters(query.params)
        returns_rows, many = isinstance(query.statement, Select), query.many
        result = await self._on_raw_connection(
            query.operation,
            driver,
            lambda raw: driver.run(raw, compiled, params, returns_rows, many),
            (compiled.sql, params),
        )
        return query.extract(result)

    async def _on_raw_connection(
        self,
        operation: str,
        driver: AsyncDriver,
        work: Callable[[Any], Awaitable[T]],
        statement: tuple[str, Any] | None = None,
    ) -> T:
        """``work`` on a driver connection from the engine's pool, in its own transaction,
        retried once on a connection found dead and after each lock conflict (see
        :func:`.errors.lock_conflict`); driver errors become ormsession's. All of
        it within the timeout. ``statement`` (SQL and parameters) is what ``work`` sends,
        for the size check before a retry (see :meth:`_refuse_oversized`)."""
        conflicts: list[BaseException] = []
        try:
            async with asyncio.timeout(self.timeout) as deadline:
                return await self._with_retry(
                    operation, driver, work, statement, deadline, conflicts
                )
        except TimeoutError as exc:  # the deadline's: the others are wrapped inside
            raise self._timed_out(exc, operation, conflicts) from exc

    async def _with_retry(
        self,
        operation: str,
        driver: AsyncDriver,
        work: Callable[[Any], Awaitable[T]],
        statement: tuple[str, Any] | None,
        deadline: asyncio.Timeout,
        conflicts: list[BaseException],
    ) -> T:
        retried = False
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                return await spawn(self._on_pooled_connection, operation, driver, work)
            except driver.integrity_errors as exc:
                if operation == "create":
                    raise IntegrityError(None, None, exc) from exc
                raise self._failed(exc, operation) from exc
            except driver.failures as exc:
                if driver.is_disconnect(exc) and not retried:
                    if statement is not None:
                        await self._refuse_oversized(operation, driver, statement, exc)
                    retried = True
                    continue
                if lock_conflict(exc):
                    conflicts.append(exc)
                    if await _paused(len(conflicts), deadline, loop.time() - started):
                        continue
                    raise self._timed_out(exc, operation, conflicts) from exc
                raise self._classified(exc, operation, driver) from exc
            except UnicodeError as exc:
                raise unencodable_text(exc, self.engine.url, operation) from exc

    async def _refuse_oversized(
        self, operation: str, driver: AsyncDriver, statement: tuple[str, Any], exc: BaseException
    ) -> None:
        """MySQL drops the connection of a client that sends a packet over the server's
        ``max_allowed_packet``, which looks like an outage: before sending it again, ask
        the server for its limit, and refuse a statement over it for what it is."""
        size = payload_size(*statement)
        if not self._packet_limited or size < MIN_PACKET_LIMIT:
            return
        row = await spawn(
            self._on_pooled_connection,
            operation,
            driver,
            lambda raw: driver.fetch_row(raw, MAX_PACKET_QUERY, ()),
        )
        limit = int(row[0]) if row is not None else 0
        if limit and size >= limit:
            raise server_packet_error(size, limit) from exc

    def _on_pooled_connection(
        self, operation: str, driver: AsyncDriver, work: Callable[[Any], Awaitable[T]]
    ) -> T:
        """:meth:`_on_raw_connection`'s one operation, in one greenlet (SQLAlchemy's bridge,
        which its pool needs to connect): the pool's connection as the pool hands it out,
        ``work`` awaited on the driver's, and the connection given back. Without an
        ``AsyncConnection`` (whose close runs in a task of its own) and in one greenlet
        rather than one for the checkout and one for the return, an operation costs
        ~80 µs less on a local server; on a greenlet kept from an earlier operation
        (:mod:`.bridge`), 30-40 µs less again."""
        connection = self._check_out(operation)
        raw: Any = connection.driver_connection
        try:
            result = await_only(work(raw))
            if driver.in_transaction(raw):
                await_only(raw.commit())
            return result
        except BaseException as exc:
            # A dead, or half-used (cancelled mid-statement), connection must never go
            # back to the pool.
            if isinstance(exc, asyncio.CancelledError):
                driver.abort(raw)
                await_only(asyncio.shield(greenlet_spawn(connection.invalidate)))
            elif driver.is_disconnect(exc):
                # The server went away: so did every connection the pool made before now
                # (see the sync twin), which the pool replaces on their next checkout.
                driver.abort(raw)
                pool = self.engine.sync_engine.pool
                await_only(asyncio.shield(greenlet_spawn(pool._invalidate, connection, exc)))
            elif not self._autocommit and driver.in_transaction(raw):
                self._roll_back(driver, connection, raw)
            raise
        finally:
            if self._autocommit:
                # ormsession's own engine resets nothing on return (engine_options): the
                # return does no I/O but close an overflow connection, whose slot the pool
                # frees even when cancelled. So in place.
                connection.close()
            else:
                # An app's engine may roll back on return: a cancellation must not cut
                # that short, so it runs shielded, as SQLAlchemy's own close does.
                await_only(asyncio.shield(greenlet_spawn(connection.close)))

    @staticmethod
    def _roll_back(driver: AsyncDriver, connection: PoolProxiedConnection, raw: Any) -> None:
        """End the transaction a failed statement opened on an app's connection before it
        goes back to the pool: an app's pool may not reset connections on return
        (``pool_reset_on_return=None``), and PostgreSQL refuses every later statement in an
        aborted transaction (MySQL keeps its locks). A connection that cannot be rolled
        back is discarded."""
        try:
            await_only(raw.rollback())
        except BaseException as exc:
            driver.abort(raw)
            await_only(asyncio.shield(greenlet_spawn(connection.invalidate)))
            if not isinstance(exc, driver.failures):
                raise  # a cancellation goes on

    def _check_out(self, operation: str) -> PoolProxiedConnection:
        try:
            return self.engine.sync_engine.raw_connection()
        except SQLAlchemyError as exc:  # the pool's own errors (its checkout timeout)
            raise wrap_sql_error(exc, self.engine.sync_engine, operation) from exc
        except (self._dbapi_error, *self._driver_errors) as exc:
            # A connection that cannot be made (refused, timed out, credentials or
            # database refused), left unwrapped by raw_connection(): the store is
            # unavailable, as the sync repository reports it.
            raise self._unreachable(exc, operation) from exc

    @property
    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        """What a driver raises unwrapped (connecting, or on its own connection)."""
        return self._driver.failures if self._driver is not None else (OSError, TimeoutError)

    def _classified(
        self, exc: BaseException, operation: str, driver: AsyncDriver | None = None
    ) -> StoreError:
        """A driver's own error as ormsession's: an outage (a dead connection, the network,
        credentials or server refusing us) or a failure."""
        driver = driver or self._driver
        unavailable = isinstance(exc, OSError | TimeoutError) or (
            driver is not None and (driver.is_disconnect(exc) or driver.is_unavailable(exc))
        )
        if unavailable:
            return self._unreachable(exc, operation)
        return self._failed(exc, operation)

    def _timed_out(
        self, exc: BaseException, operation: str, conflicts: list[BaseException]
    ) -> StoreUnavailableError:
        """The operation ran out of time: after lock conflicts, the last one is the reason
        (the try after it may have been cut by the deadline, a bare TimeoutError)."""
        return timed_out(
            conflicts[-1] if conflicts else exc, self.engine.url, operation, self.timeout
        )

    def _failed(self, exc: BaseException, operation: str) -> StoreError:
        where = display_sql_url(self.engine.url)
        detail = scrub(f"{type(exc).__name__}: {exc}", self.engine.url.password)
        return StoreError(f"session store {where} failed during {operation}: {detail}")

    def _unreachable(self, exc: BaseException, operation: str) -> StoreUnavailableError:
        where = display_sql_url(self.engine.url)
        detail = scrub(f"{type(exc).__name__}: {exc}", self.engine.url.password)
        if login_refused(exc, detail):
            return StoreUnavailableError(login_refused_message(where, operation, detail))
        return StoreUnavailableError(
            f"session store {where} unavailable during {operation}: {detail}"
        )

    async def _in_transaction(self, connection: AsyncConnection, query: Query[T]) -> T:
        if self._autocommit:
            return query.extract(
                await connection.execute(query.statement, query.params, execution_options=BUFFERED)
            )
        async with connection.begin():
            return query.extract(
                await connection.execute(query.statement, query.params, execution_options=BUFFERED)
            )


async def _paused(attempt: int, deadline: asyncio.Timeout, took: float) -> bool:
    """Wait before running again a statement a lock conflict ended; False, without
    waiting, when the pause and another try as long as the last one (``took`` seconds)
    would reach the deadline: that try would only be cut there."""
    pause = conflict_pause(attempt)
    end = deadline.when()
    if end is not None and asyncio.get_running_loop().time() + pause + took >= end:
        return False
    await asyncio.sleep(pause)
    return True
