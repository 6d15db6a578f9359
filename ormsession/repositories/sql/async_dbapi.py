"""Running the session statements on the asyncio drivers' own connections.

The asyncio twin of :mod:`dbapi`: SQLAlchemy's asyncio layer adds greenlet hops and its
execution context to every call (tens of µs on a local server), so for the known drivers the
repository takes the driver connection out of the engine's pool and runs the statement
compiled once for the dialect. Each driver differs only in how it runs a statement and
reports rows and row counts, which is all this module knows.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Sequence
from functools import cached_property
from typing import Any, TypeVar

from ormsession.repositories.sql.dbapi import CompiledStatement
from ormsession.repositories.sql.errors import unavailable_sqlstate
from ormsession.repositories.sql.watchdog import shut_down

T = TypeVar("T")

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
    #: Whether SQLAlchemy's own execution layer binds this driver's parameters safely: an
    #: engine whose executions the app listens to goes through that layer, but never one
    #: of a driver that binds wrongly there (session data is then bound here).
    binds_safely_in_sqlalchemy: bool = True

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


class _MySQLCodes(AsyncDriver):
    """What asyncmy and aiomysql share: MySQL's error codes, and parameters SQLAlchemy's
    layer would hand to the driver's own broken binding (see each)."""

    binds_safely_in_sqlalchemy = False

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
        connection.close()  # asyncmy's and aiomysql's close() only close the transport

    def is_unavailable(self, exc: BaseException) -> bool:
        # 1040 too many connections, 1044/1045 access denied, 1049 unknown database,
        # 1129 host blocked, 1203 user over max_user_connections, 2002/2003 cannot connect.
        code = exc.args[0] if exc.args else None
        return code in (1040, 1044, 1045, 1049, 1129, 1203, 2002, 2003)

    def in_transaction(self, connection: Any) -> bool:
        return not connection.get_autocommit()


class _Aiomysql(_MySQLCodes):
    """aiomysql, with the parameters bound here: aiomysql 0.3.2 escapes ``bytes`` with a
    PyMySQL function that PyMySQL 1.2 replaced by a string (``TypeError: 'str' object is
    not callable`` on every bytes parameter, aio-libs/aiomysql issue 1080), and session
    data is bytes. So the statement is sent as bytes with its literals in place, escaped
    as PyMySQL 1.2 escapes them itself: text and other values by aiomysql's own
    ``escape()`` (which honours the server's NO_BACKSLASH_ESCAPES), bytes as a
    ``_binary'...'`` literal escaped byte for byte. Works with every PyMySQL."""

    def __init__(self) -> None:
        import pymysql.err

        self.integrity_errors = (pymysql.err.IntegrityError,)
        self.errors = (pymysql.err.Error,)

    @staticmethod
    def _query(connection: Any, sql: str, params: Sequence[Any]) -> bytes:
        return _bound_query(connection, connection.encoding, sql, params)

    async def fetch_row(self, connection: Any, sql: str, params: Any) -> Sequence[Any] | None:
        async with connection.cursor() as cursor:
            await cursor.execute(self._query(connection, sql, params))
            row: Sequence[Any] | None = await cursor.fetchone()
            return row

    async def fetch_rows(self, connection: Any, sql: str, params: Any) -> Sequence[Sequence[Any]]:
        async with connection.cursor() as cursor:
            await cursor.execute(self._query(connection, sql, params))
            rows: Sequence[Sequence[Any]] = await cursor.fetchall()
            return rows

    async def execute(self, connection: Any, sql: str, params: Any) -> int:
        async with connection.cursor() as cursor:
            await cursor.execute(self._query(connection, sql, params))
            return int(cursor.rowcount)


def _bound_query(connection: Any, encoding: str, sql: str, params: Sequence[Any]) -> bytes:
    """``sql`` with its parameters in place as literals, bytes as :func:`_binary_literal`,
    the others escaped by the connection's own ``escape()``; as bytes in ``encoding``."""
    literals = tuple(
        _binary_literal(connection, value)
        if isinstance(value, bytes)
        else connection.escape(value).encode(encoding)
        for value in params
    )
    # SQLAlchemy writes a literal % as %% for these drivers' "format" style.
    return sql.encode(encoding) % literals


def _binary_literal(connection: Any, value: bytes) -> bytes:
    """``value`` as MySQL's ``_binary'...'``: latin-1 maps each byte to one character and
    back, so the connection's string escaping escapes it byte for byte."""
    escaped: str = connection.escape_string(value.decode("latin-1"))
    return b"_binary'" + escaped.encode("latin-1") + b"'"


class _PsycopgAsync(AsyncDriver):
    """psycopg 3's asyncio connection. Its own answer to a cancelled statement is to send
    the server a cancel request (up to 5 s) and then wait for the statement again (up to
    5 s more): against a stalled server, 10 s past ormsession's deadline. So the
    statement runs in a task of its own; when the operation is cancelled (its deadline),
    the connection's socket is shut down first, which ends that task at once with a
    connection error, and the connection is discarded. (One task per statement, a few µs.)
    """

    def __init__(self) -> None:
        import psycopg
        from psycopg.pq import TransactionStatus

        self._psycopg = psycopg
        self._idle = TransactionStatus.IDLE
        self.integrity_errors = (psycopg.IntegrityError,)
        self.errors = (psycopg.Error,)

    def is_disconnect(self, exc: BaseException) -> bool:
        if isinstance(exc, ConnectionError):
            return True
        if not isinstance(exc, self._psycopg.OperationalError | self._psycopg.InterfaceError):
            return False
        # No SQLSTATE: the client's own error (connection lost or closed); 08: connection
        # exception; 57P: the server shutting down, or our backend terminated.
        sqlstate = getattr(exc, "sqlstate", None)
        return sqlstate is None or sqlstate.startswith(("08", "57P"))

    def is_unavailable(self, exc: BaseException) -> bool:
        return unavailable_sqlstate(getattr(exc, "sqlstate", None))

    def abort(self, connection: Any) -> None:
        connection.pgconn.finish()  # no wait for the server: the socket is closed

    async def fetch_row(self, connection: Any, sql: str, params: Any) -> Sequence[Any] | None:
        cursor = await _cut_when_cancelled(connection, connection.execute(sql, params))
        row: Sequence[Any] | None = await cursor.fetchone()  # no I/O: the rows are here
        return row

    async def fetch_rows(self, connection: Any, sql: str, params: Any) -> Sequence[Sequence[Any]]:
        cursor = await _cut_when_cancelled(connection, connection.execute(sql, params))
        rows: Sequence[Sequence[Any]] = await cursor.fetchall()  # no I/O, as above
        return rows

    async def execute(self, connection: Any, sql: str, params: Any) -> int:
        cursor = await _cut_when_cancelled(connection, connection.execute(sql, params))
        return int(cursor.rowcount)

    def in_transaction(self, connection: Any) -> bool:
        return bool(connection.pgconn.transaction_status != self._idle)


async def _cut_when_cancelled(connection: Any, statement: Awaitable[T]) -> T:
    """``statement`` awaited in a task of its own; if the caller is cancelled first, the
    connection's socket is shut down and the task (then failing at once) waited for, so
    the connection is left to no one when the cancellation goes on."""
    task = asyncio.ensure_future(statement)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            shut_down(connection.fileno())
            # asyncio.wait() does not pass a second cancellation on to the task.
            await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # retrieved: the caller's cancellation is what goes on
        raise


class _Asyncmy(_MySQLCodes):
    """asyncmy, which escapes ``bytes`` with backslashes whatever the server's mode: on a
    connection in ``NO_BACKSLASH_ESCAPES`` (an app's engine may set that ``sql_mode``) a
    quote in session data would end the literal, and a backslash would be stored twice.
    There the parameters are bound here, as for aiomysql (:func:`_bound_query`)."""

    def __init__(self) -> None:
        import asyncmy.errors
        from asyncmy.constants.SERVER_STATUS import SERVER_STATUS_NO_BACKSLASH_ESCAPES

        self.integrity_errors = (asyncmy.errors.IntegrityError,)
        self.errors = (asyncmy.errors.Error,)
        self._no_backslash_escapes = SERVER_STATUS_NO_BACKSLASH_ESCAPES

    async def _execute(self, cursor: Any, sql: str, params: Any) -> None:
        connection = cursor.connection
        if connection.server_status & self._no_backslash_escapes:
            await cursor.execute(_bound_query(connection, connection._encoding, sql, params))
        else:
            await cursor.execute(sql, params)

    async def fetch_row(self, connection: Any, sql: str, params: Any) -> Sequence[Any] | None:
        async with connection.cursor() as cursor:
            await self._execute(cursor, sql, params)
            row: Sequence[Any] | None = await cursor.fetchone()
            return row

    async def fetch_rows(self, connection: Any, sql: str, params: Any) -> Sequence[Sequence[Any]]:
        async with connection.cursor() as cursor:
            await self._execute(cursor, sql, params)
            rows: Sequence[Sequence[Any]] = await cursor.fetchall()
            return rows

    async def execute(self, connection: Any, sql: str, params: Any) -> int:
        async with connection.cursor() as cursor:
            await self._execute(cursor, sql, params)
            return int(cursor.rowcount)


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


#: By the engine's ``dialect.driver``: psycopg 3's asyncio dialect is named "psycopg" too
#: (only the asyncio repository asks this table).
ASYNC_DRIVERS: dict[str, type[AsyncDriver]] = {
    "asyncpg": _Asyncpg,
    "psycopg": _PsycopgAsync,
    "asyncmy": _Asyncmy,
    "aiomysql": _Aiomysql,
    "aiosqlite": _Aiosqlite,
}


def driver_for(driver_name: str) -> AsyncDriver | None:
    """The driver adapter for an engine's driver, or None (use SQLAlchemy's own path)."""
    factory = ASYNC_DRIVERS.get(driver_name)
    return factory() if factory is not None else None
