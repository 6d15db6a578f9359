"""Running the session statements straight on DBAPI cursors, for the known sync drivers.

A session operation is one tiny statement, so SQLAlchemy's per-execution machinery
(execution context, result object, type processing) costs more than the database round trip
on a local server — about 25 µs a call. Here each statement is compiled by SQLAlchemy once,
for the engine's dialect, and then run on a cursor from the engine's own pool, with the only
type conversions these statements need (UTC datetimes and bytes) done by hand. Pool events,
pre-ping, recycling and reset-on-return all still apply: connections come from
``engine.raw_connection()``. Execution events do not, so an engine with listeners for them
keeps SQLAlchemy's layer (:func:`watches_executions`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Dialect, Engine, Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from ormsession.expiry import from_us
from ormsession.repositories.base import StoredSession
from ormsession.repositories.sql.statements import RowReader, row_reader
from ormsession.repositories.sql.types import (
    UTCDateTime,
    aware_utc,
    naive_from_us,
    naive_utc,
    text_from_us,
    utc_text,
)

__all__ = [
    "DBAPI_DRIVERS",
    "CompiledStatement",
    "RawResult",
    "StatementCache",
    "record_reader",
    "watches_executions",
]

#: Sync drivers whose datetime and bytes handling this module knows.
DBAPI_DRIVERS = {
    ("postgresql", "psycopg2"),
    ("postgresql", "psycopg"),
    ("mysql", "pymysql"),
    ("mariadb", "pymysql"),
    ("mysql", "mysqldb"),
    ("mariadb", "mysqldb"),
    ("mysql", "mariadbconnector"),
    ("mariadb", "mariadbconnector"),
    ("sqlite", "pysqlite"),
}


#: The engine events that only SQLAlchemy's execution layer fires.
_EXECUTION_EVENTS = (
    "before_execute",
    "after_execute",
    "before_cursor_execute",
    "after_cursor_execute",
)


def watches_executions(engine: Engine) -> bool:
    """Whether an app listens to ``engine``'s statement executions (tracing, statement
    logs, a statement rewriter): the statements must then run through SQLAlchemy's
    execution layer, which fires those events, and not straight on cursors."""
    dispatch = engine.dispatch
    return any(getattr(dispatch, name) for name in _EXECUTION_EVENTS)


def record_reader(dialect: Dialect) -> RowReader:
    """:func:`row_reader` straight off a DBAPI cursor."""
    read_row = row_reader(dialect.name)

    def read(cursor: Any) -> StoredSession | None:
        return read_row(cursor.fetchone())

    return read


#: How each dialect binds a UTC time by hand: from an aware datetime (the conversion
#: :class:`UTCDateTime` does) and, in one step, from µs (the read's ``now``). One row per
#: dialect, so the two conversions cannot drift apart.
_TIME_BINDERS: dict[str, tuple[Callable[[datetime], Any], Callable[[int], Any]]] = {
    # Exactly SQLAlchemy's SQLite DATETIME storage format, so both paths compare alike.
    "sqlite": (utc_text, text_from_us),
    "postgresql": (aware_utc, from_us),
}
_NAIVE_BINDERS = (naive_utc, naive_from_us)  # MySQL/MariaDB DATETIME: naive UTC


def datetime_binder(dialect: Dialect) -> Callable[[datetime], Any]:
    """The same conversion :class:`UTCDateTime` does, for parameters bound by hand."""
    return _TIME_BINDERS.get(dialect.name, _NAIVE_BINDERS)[0]


def us_binder(dialect: Dialect) -> Callable[[int], Any]:
    """:func:`datetime_binder` for a time in µs (the read's ``now``), in one step."""
    return _TIME_BINDERS.get(dialect.name, _NAIVE_BINDERS)[1]


class CompiledStatement:
    """One statement compiled for a dialect: SQL text, parameter order, conversions."""

    __slots__ = (
        "_binder",
        "_datetime_params",
        "_defaults",
        "_names",
        "_plan",
        "_us_binder",
        "sql",
    )

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        assert isinstance(statement, ClauseElement)
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        self._names: Sequence[str] | None = (
            list(compiled.positiontup or []) if compiled.positional else None
        )
        self._defaults = {k: v for k, v in compiled.params.items() if v is not None}
        self._datetime_params = frozenset(
            name for name, bind in compiled.binds.items() if isinstance(bind.type, UTCDateTime)
        )
        self._binder = datetime_binder(dialect)
        self._us_binder = us_binder(dialect)
        # For positional drivers: each placeholder's name, and whether it is a datetime.
        self._plan = [(name, name in self._datetime_params) for name in self._names or ()]

    def parameters(self, values: dict[str, Any]) -> Sequence[Any] | dict[str, Any]:
        binder, defaults = self._binder, self._defaults
        if self._names is None:
            params = defaults | values
            for name in self._datetime_params:
                if name in params:
                    params[name] = binder(params[name])
            return params
        return tuple(
            [
                binder(values[name])
                if is_datetime
                else values[name]
                if name in values
                else defaults[name]
                for name, is_datetime in self._plan
            ]
        )

    def key_and_time_parameters(self) -> Callable[[str, int], Sequence[Any] | dict[str, Any]]:
        """:meth:`parameters` as a function of ``key`` and ``now`` (in µs), for a statement
        that binds just those two (the read): the usual placements are worked out once, as
        the read runs on every request."""
        binder = self._us_binder
        if not self._defaults:
            if self._plan == [("key", False), ("now", True)]:
                return lambda key, now_us: (key, binder(now_us))
            if self._names is None and self._datetime_params == {"now"}:
                return lambda key, now_us: {"key": key, "now": binder(now_us)}
        return lambda key, now_us: self.parameters({"key": key, "now": from_us(now_us)})


class StatementCache:
    """Each statement compiled once for one dialect, on first use."""

    __slots__ = ("_compiled", "_dialect")

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._compiled: dict[Any, CompiledStatement] = {}

    def __getitem__(self, statement: Executable) -> CompiledStatement:
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled[statement] = CompiledStatement(statement, self._dialect)
        return compiled


class RawResult:
    """The part of SQLAlchemy's CursorResult the queries read, over a DBAPI cursor."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    def first(self) -> tuple[Any, ...] | None:
        # Time columns stay as the driver returns them: the readers take any of those
        # forms (see types.us_from_column).
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def all(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._cursor.fetchall()]

    def scalar_one(self) -> Any:
        row = self._cursor.fetchone()
        if row is None:
            raise LookupError("no row")
        return row[0]
