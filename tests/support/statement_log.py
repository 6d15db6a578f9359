"""Engines that record every SQL statement their DBAPI cursors execute.

ormsession runs its statements straight on DBAPI cursors (SQLAlchemy's cursor events do not
see them), so the recording happens in the driver: a tracing cursor class for PyMySQL,
psycopg2's LoggingConnection, and sqlite3's trace callback.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


class StatementLog(list[str]):
    """The first word of each statement, upper-cased: SELECT, INSERT, UPDATE, DELETE...;
    ``texts`` holds the statements whole."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def record(self, sql: str) -> None:
        words = sql.split()
        if words:
            self.append(words[0].upper())
            self.texts.append(sql)

    def clear(self) -> None:
        super().clear()
        self.texts.clear()


def traced_engine(url: str) -> tuple[Engine, StatementLog]:
    log = StatementLog()
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url)
        event.listen(
            engine, "connect", lambda connection, _record: connection.set_trace_callback(log.record)
        )
    elif backend == "postgresql":
        from psycopg2.extras import LoggingConnection

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                message = record.msg
                log.record(message.decode() if isinstance(message, bytes) else str(message))

        logger = logging.getLogger(f"tests.statement_log.{id(log)}")
        logger.addHandler(_Handler())
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        engine = create_engine(url, connect_args={"connection_factory": LoggingConnection})
        # insert=True: before SQLAlchemy's own first-connect queries use a cursor.
        event.listen(
            engine,
            "connect",
            lambda connection, _record: connection.initialize(logger),
            insert=True,
        )
    else:
        import pymysql.cursors

        class TracingCursor(pymysql.cursors.Cursor):
            def execute(self, query: Any, args: Any = None) -> int:
                log.record(str(query))
                return int(super().execute(query, args))

        engine = create_engine(url, connect_args={"cursorclass": TracingCursor})
    return engine, log
