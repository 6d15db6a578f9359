"""Running the session statements on the asyncio drivers' own connections.

The asyncio twin of :mod:`dbapi`: SQLAlchemy's asyncio layer adds greenlet hops and its
execution context to every call (tens of µs on a local server), so for the known drivers the
repository takes the driver connection out of the engine's pool and runs the statement
compiled once for the dialect. Each driver differs only in how it runs a statement and
reports rows and row counts, which is all this module knows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from ormsession.repositories.sql.dbapi import CompiledStatement
from ormsession.repositories.sql.errors import unavailable_sqlstate

__all__ = ["ASYNC_DRIVERS", "AsyncDriver", "driver_for"]


class _Result:
    """Rows and a row count, shaped like :class:`~.dbapi.RawResult`."""

    __slots__ = ("_row", "_rows", "rowcount")

    def __init__(
        self,
        row: Sequence[Any] | None,
        rowcount: int,
        rows: Sequence[Sequence[Any]] | None = None,
    ) -> None:
        self._row = row
        self._rows = rows
        self.rowcount = rowcount

    def first(self) -> tuple[Any, ...] | None:
        # Time columns as the driver returns them (see types.us_from_column).
        return None if self._row is None else tuple(self._row)

    def all(self) -> list[tuple[Any, ...]]:
        rows = self._rows if self._rows is not None else [] if self._row is None else [self._row]
        return [tuple(row) for row in rows]

    def scalar_one(self) -> Any:
        if self._row is None:
            raise LookupError("no row")
        return self._row[0]


class AsyncDriver:
    """How one asyncio driver runs a compiled statement on its own connection."""

    integrity_errors: tuple[type[BaseException], ...] = ()
    #: Errors that mean "this connection is dead" (the pool must drop it).
    disconnect_errors: tuple[type[BaseException], ...] = (ConnectionError,)
    #: Every error the driver raises (wrapped into ormsession's errors).
    errors: tuple[type[BaseException], ...] = ()

    @cached_property
    def failures(self) -> tuple[type[BaseException], ...]:
        """What a statement may raise: the driver's errors, and the network's (built once:
        it is caught around every statement)."""
        return (*self.errors, OSError, TimeoutError)

    def is_disconnect(self, exc: BaseException) -> bool:
        return isinstance(exc, self.disconnect_errors)

    def is_unavailable(self, exc: BaseException) -> bool:
        """Whether a driver error that is not a dead connection still means the store
        cannot serve us now (wrong credentials, no such database, too many clients)."""
        return False

    def abort(self, connection: Any) -> None:
        """Close a connection that is being discarded at once, without a word to the
        server: SQLAlchemy's invalidation first tries a polite close, which a stalled
        server would make wait (asyncpg's for up to 2 s)."""

    async def run(
        self,
        connection: Any,
        statement: CompiledStatement,
        params: Any,
        returns_rows: bool,
        many: bool = False,
    ) -> _Result:
        if many:
            rows = await self.fetch_rows(connection, statement.sql, params)
            return _Result(rows[0] if rows else None, len(rows), rows)
        if returns_rows:
            row = await self.fetch_row(connection, statement.sql, params)
            return _Result(row, 1 if row is not None else 0)
        return _Result(None, await self.execute(connection, statement.sql, params))

    async def fetch_row(self, connection: Any, sql: str, params: Any) -> Sequence[Any] | None:
        """The first row a query returns, as the driver gives it (None: no row)."""
        raise NotImplementedError

    async def fetch_rows(self, connection: Any, sql: str, params: Any) -> Sequence[Sequence[Any]]:
        """Every row a query returns (the user index's lookups), through the DBAPI-like
        cursor most asyncio drivers have; the others override it."""
        async with connection.cursor() as cursor:
            await cursor.execute(sql, params)
            rows: Sequence[Sequence[Any]] = await cursor.fetchall()
            return rows

    async def execute(self, connection: Any, sql: str, params: Any) -> int:
        """Run a statement that returns no rows; the number of rows it changed."""
        raise NotImplementedError

    def in_transaction(self, connection: Any) -> bool:
        """Whether the driver opened an implicit transaction (an app's engine that is not in
        autocommit), which the caller then commits; asked without I/O."""
        return False


class _Asyncpg(AsyncDriver):
    def __init__(self) -> None:
        import asyncpg

        self.integrity_errors = (asyncpg.exceptions.IntegrityConstraintViolationError,)
        self.disconnect_errors = (
            ConnectionError,
            asyncpg.exceptions.ConnectionDoesNotExistError,
            asyncpg.exceptions.AdminShutdownError,
            asyncpg.exceptions.InterfaceError,
            # "cannot switch to state ...; another operation is in progress": a pooled
            # connection whose backend was terminated (pg_terminate_backend) under it.
            asyncpg.exceptions.InternalClientError,
        )
        self.errors = (
            asyncpg.exceptions.PostgresError,
            asyncpg.exceptions.InterfaceError,
            asyncpg.exceptions.InternalClientError,
        )

    def abort(self, connection: Any) -> None:
        connection.terminate()

    def is_unavailable(self, exc: BaseException) -> bool:
        # A wrong password is InvalidPasswordError (SQLSTATE 28P01), a PostgresError like
        # any failed statement: the SQLSTATE class tells them apart.
        return unavailable_sqlstate(getattr(exc, "sqlstate", None))

    async def fetch_row(self, connection: Any, sql: str, params: Any) -> Sequence[Any] | None:
        row: Sequence[Any] | None = await connection.fetchrow(sql, *params)
        return row

    async def fetch_rows(self, connection: Any, sql: str, params: Any) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = await connection.fetch(sql, *params)
        return rows

    async def execute(self, connection: Any, sql: str, params: Any) -> int:
        status: str = await connection.execute(sql, *params)
        # asyncpg reports "UPDATE 1", "DELETE 3", "INSERT 0 1": the count is the last word.
        return int(status.rsplit(" ", 1)[-1])

    # asyncpg never opens implicit transactions: statements outside one autocommit.


class _Asyncmy(AsyncDriver):
    def __init__(self) -> None:
        import asyncmy.errors

        self.integrity_errors = (asyncmy.errors.IntegrityError,)
        self.errors = (asyncmy.errors.Error,)

    def is_disconnect(self, exc: BaseException) -> bool:
        # 2006 gone away, 2013 lost connection, 2055 lost (system error), 1927 killed,
        # 1153 packet over max_allowed_packet (the server then drops the connection).
        code = exc.args[0] if exc.args else None
        if isinstance(code, str):
            # The protocol lost its place (asyncmy reads the error packet of a packet over
            # max_allowed_packet so): nothing more can be read on this connection.
            return code.startswith("Packet sequence number wrong")
        return isinstance(exc, ConnectionError) or code in (2006, 2013, 2055, 1927, 1153)

    def abort(self, connection: Any) -> None:
        connection.close()  # asyncmy's close() only closes the transport

    def is_unavailable(self, exc: BaseException) -> bool:
        # 1040 too many connections, 1044/1045 access denied, 1049 unknown database,
        # 1129 host blocked, 1203 user over max_user_connections, 2002/2003 cannot connect.
        code = exc.args[0] if exc.args else None
        return code in (1040, 1044, 1045, 1049, 1129, 1203, 2002, 2003)

    async def fetch_row(self, connection: Any, sql: str, params: Any) -> Sequence[Any] | None:
        async with connection.cursor() as cursor:
            await cursor.execute(sql, params)
            row: Sequence[Any] | None = await cursor.fetchone()
            return row

    async def execute(self, connection: Any, sql: str, params: Any) -> int:
        async with connection.cursor() as cursor:
            await cursor.execute(sql, params)
            return int(cursor.rowcount)

    def in_transaction(self, connection: Any) -> bool:
        return not connection.get_autocommit()


class _Aiosqlite(AsyncDriver):
    integrity_errors = (sqlite3.IntegrityError,)
    errors = (sqlite3.Error,)

    async def fetch_row(self, connection: Any, sql: str, params: Any) -> Sequence[Any] | None:
        # One hop to aiosqlite's thread (execute, fetch and the cursor's end all there), not
        # three (execute, fetchone, close): each hop wakes the event loop, and the three
        # cost a read ~2x the instructions of the statement itself. The statements that
        # come here return one row at most.
        rows: Sequence[Sequence[Any]] = await connection.execute_fetchall(sql, params)
        return rows[0] if rows else None

    async def fetch_rows(self, connection: Any, sql: str, params: Any) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = await connection.execute_fetchall(sql, params)
        return rows

    async def execute(self, connection: Any, sql: str, params: Any) -> int:
        # One hop, not two (execute, then the cursor's close): the statement runs and its
        # row count is read in one call on aiosqlite's thread. aiosqlite has no public call
        # for that; ``_execute`` (queue a function for its thread) is what its own methods
        # are made of (since 0.1), as SQLAlchemy's adapter reaches into that queue too.
        changed: int = await connection._execute(_changed_rows, connection, sql, params)
        return changed

    def in_transaction(self, connection: Any) -> bool:
        return connection.isolation_level is not None and bool(connection.in_transaction)


def _changed_rows(connection: Any, sql: str, params: Any) -> int:
    """On aiosqlite's thread: run ``sql`` on its sqlite3 connection, the rows it changed."""
    cursor = connection._conn.execute(sql, params)
    try:
        return int(cursor.rowcount)
    finally:
        cursor.close()


ASYNC_DRIVERS = {"asyncpg": _Asyncpg, "asyncmy": _Asyncmy, "aiosqlite": _Aiosqlite}


def driver_for(driver_name: str) -> AsyncDriver | None:
    """The driver adapter for an engine's driver, or None (use SQLAlchemy's own path)."""
    factory = ASYNC_DRIVERS.get(driver_name)
    return factory() if factory is not None else None
