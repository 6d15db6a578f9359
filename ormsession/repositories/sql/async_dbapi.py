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
from typing import Any

from ormsession.repositories.sql.dbapi import CompiledStatement

__all__ = ["ASYNC_DRIVERS", "AsyncDriver", "driver_for"]


class _Result:
    """Rows and a row count, shaped like :class:`~.dbapi.RawResult`."""

    __slots__ = ("_row", "_statement", "rowcount")

    def __init__(
        self, statement: CompiledStatement, row: Sequence[Any] | None, rowcount: int
    ) -> None:
        self._statement = statement
        self._row = row
        self.rowcount = rowcount

    def first(self) -> tuple[Any, ...] | None:
        return self._statement.convert_row(self._row)

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

    def is_disconnect(self, exc: BaseException) -> bool:
        return isinstance(exc, self.disconnect_errors)

    async def run(
        self, connection: Any, statement: CompiledStatement, params: Any, returns_rows: bool
    ) -> _Result:
        raise NotImplementedError

    async def end_transaction(self, connection: Any) -> None:
        """Commit when the driver opened an implicit transaction (an app's engine that is not
        in autocommit); a no-op for autocommit connections."""


class _Asyncpg(AsyncDriver):
    def __init__(self) -> None:
        import asyncpg

        self.integrity_errors = (asyncpg.exceptions.IntegrityConstraintViolationError,)
        self.disconnect_errors = (
            ConnectionError,
            asyncpg.exceptions.ConnectionDoesNotExistError,
            asyncpg.exceptions.AdminShutdownError,
            asyncpg.exceptions.InterfaceError,
        )
        self.errors = (asyncpg.exceptions.PostgresError, asyncpg.exceptions.InterfaceError)

    async def run(
        self, connection: Any, statement: CompiledStatement, params: Any, returns_rows: bool
    ) -> _Result:
        if returns_rows:
            row = await connection.fetchrow(statement.sql, *params)
            return _Result(statement, row, 1 if row is not None else 0)
        status: str = await connection.execute(statement.sql, *params)
        # asyncpg reports "UPDATE 1", "DELETE 3", "INSERT 0 1": the count is the last word.
        return _Result(statement, None, int(status.rsplit(" ", 1)[-1]))

    # asyncpg never opens implicit transactions: statements outside one autocommit.


class _Asyncmy(AsyncDriver):
    def __init__(self) -> None:
        import asyncmy.errors

        self.integrity_errors = (asyncmy.errors.IntegrityError,)
        self.errors = (asyncmy.errors.Error,)

    def is_disconnect(self, exc: BaseException) -> bool:
        # 2006 gone away, 2013 lost connection, 2055 lost (system error), 1927 killed.
        code = exc.args[0] if exc.args else None
        return isinstance(exc, ConnectionError) or code in (2006, 2013, 2055, 1927)

    async def run(
        self, connection: Any, statement: CompiledStatement, params: Any, returns_rows: bool
    ) -> _Result:
        async with connection.cursor() as cursor:
            await cursor.execute(statement.sql, params)
            row = await cursor.fetchone() if returns_rows else None
            return _Result(statement, row, int(cursor.rowcount))

    async def end_transaction(self, connection: Any) -> None:
        if not connection.get_autocommit():
            await connection.commit()


class _Aiosqlite(AsyncDriver):
    integrity_errors = (sqlite3.IntegrityError,)
    errors = (sqlite3.Error,)

    async def run(
        self, connection: Any, statement: CompiledStatement, params: Any, returns_rows: bool
    ) -> _Result:
        cursor = await connection.execute(statement.sql, params)
        try:
            row = await cursor.fetchone() if returns_rows else None
            return _Result(statement, row, int(cursor.rowcount))
        finally:
            await cursor.close()

    async def end_transaction(self, connection: Any) -> None:
        if connection.isolation_level is not None and connection.in_transaction:
            await connection.commit()


ASYNC_DRIVERS = {"asyncpg": _Asyncpg, "asyncmy": _Asyncmy, "aiosqlite": _Aiosqlite}


def driver_for(driver_name: str) -> AsyncDriver | None:
    """The driver adapter for an engine's driver, or None (use SQLAlchemy's own path)."""
    factory = ASYNC_DRIVERS.get(driver_name)
    return factory() if factory is not None else None
