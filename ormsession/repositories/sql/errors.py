"""Turning SQLAlchemy/driver errors into ormsession's, without leaking secrets."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.exc import (
    DBAPIError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from ormsession.errors import (
    SchemaError,
    SessionTooLargeError,
    StoreError,
    StoreUnavailableError,
)
from ormsession.repositories.sql.urls import display_sql_url
from ormsession.urls import scrub, upgrade_command

__all__ = [
    "MAX_PACKET_QUERY",
    "MIN_PACKET_LIMIT",
    "as_sqlalchemy_error",
    "bytes_sent_by",
    "conflict_pause",
    "hide_parameters",
    "lock_conflict",
    "login_refused",
    "login_refused_message",
    "packet_too_large",
    "payload_size",
    "server_packet_error",
    "timed_out",
    "unavailable_sqlstate",
    "unencodable_text",
    "wrap_sql_error",
]

# SQLite, PostgreSQL and MySQL/MariaDB wordings of "that table is not there".
_MISSING_TABLE = re.compile(
    r"no such table|relation \S+ does not exist|table \S+ doesn't exist|UndefinedTable",
    re.IGNORECASE,
)


def wrap_sql_error(
    exc: SQLAlchemyError, engine: Engine | URL, operation: str
) -> StoreError | SchemaError:
    """An ormsession error for ``exc``: unreachable stores, missing tables and everything
    else get distinct types, and the message names the store without its password."""
    url = engine if isinstance(engine, URL) else engine.url
    hide_parameters(exc)
    where = display_sql_url(url)
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    detail = scrub(f"{type(original).__name__}: {original}".strip(), url.password)
    detail = detail.splitlines()[0] if detail else type(original).__name__
    if _MISSING_TABLE.search(detail):
        return SchemaError(
            f"session table missing in {where} ({detail}); "
            f"run: {upgrade_command(url.render_as_string(hide_password=False))}"
        )
    # PoolTimeoutError: no pooled connection came free in time. A PostgreSQL error's
    # SQLSTATE tells "wrong password" from a failed statement where the class does not
    # (SQLAlchemy's asyncpg adapter raises both as a plain DBAPIError).
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if login_refused(original or exc, detail):
        return StoreUnavailableError(login_refused_message(where, operation, detail))
    if isinstance(
        exc, OperationalError | InterfaceError | PoolTimeoutError
    ) or unavailable_sqlstate(sqlstate):
        return StoreUnavailableError(
            f"session store {where} unavailable during {operation}: {detail}"
        )
    return StoreError(f"session store {where} failed during {operation}: {detail}")


def hide_parameters(exc: BaseException) -> None:
    """Keep the statement's parameters (session data, the owner's IP address and user
    agent) out of ``exc``'s message: it is chained to the error ormsession raises, and so
    printed with its traceback. ormsession's own engine hides them already; an app's
    engine shows them unless made with ``hide_parameters=True``."""
    if isinstance(exc, StatementError):
        exc.hide_parameters = True


# -- "wrong user name or password" --------------------------------------------------------
#: MySQL/MariaDB: ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR, ER_ACCESS_DENIED_NO_PASSWORD.
_MYSQL_LOGIN_REFUSED = (1044, 1045, 1698)
# psycopg2 gives no SQLSTATE for a failed connection: its server message tells.
_LOGIN_REFUSED = re.compile(
    r"password authentication failed|is not permitted to log in|role \S+ does not exist"
    r"|Access denied for user|no password supplied",
    re.IGNORECASE,
)


def login_refused(original: BaseException, detail: str) -> bool:
    """Whether the server refused the credentials (SQLSTATE class 28 on PostgreSQL, the
    access-denied errors of MySQL): a configuration problem, not an outage."""
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if sqlstate and str(sqlstate).startswith("28"):
        return True
    code = original.args[0] if original.args else None
    if isinstance(code, int) and code in _MYSQL_LOGIN_REFUSED:
        return True
    return bool(_LOGIN_REFUSED.search(detail))


def login_refused_message(where: str, operation: str, detail: str) -> str:
    return (
        f"session store {where} refused the login during {operation} (authentication "
        f"failed: check the user name and password in the URL): {detail}"
    )


def as_sqlalchemy_error(exc: Exception, dialect: Dialect) -> StatementError:
    """``exc``, a driver error raised outside SQLAlchemy's execution layer (a DBAPI cursor,
    or a connect inside ``raw_connection()``), wrapped as that layer would have wrapped it:
    the SQLAlchemy class of its kind (``OperationalError``, ``IntegrityError``...),
    parameters hidden (they hold session data)."""
    dbapi_error: Any = dialect.loaded_dbapi.Error
    return DBAPIError.instance(None, None, exc, dbapi_error, hide_parameters=True, dialect=dialect)


def timed_out(
    exc: BaseException, url: URL, operation: str, timeout: float
) -> StoreUnavailableError:
    """The error of an operation that ran out of time (``exc``: what ended it)."""
    hide_parameters(exc)
    where = display_sql_url(url)
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    detail = scrub(f"{type(original).__name__}: {original}".strip(), url.password)
    detail = detail.splitlines()[0] if detail else type(original).__name__
    return StoreUnavailableError(
        f"session store {where} unavailable during {operation}: no answer within "
        f"{timeout:g} s ({detail})"
    )


def unencodable_text(exc: UnicodeError, url: URL, operation: str) -> StoreError:
    """The error of a statement whose text parameter (a user agent, a user id) the
    connection's character set cannot carry: an app's engine with ``charset=latin1``,
    say. The driver raises it while encoding the statement, before sending anything."""
    return StoreError(
        f"session store {display_sql_url(url)} failed during {operation}: a text value "
        f"cannot be sent in the connection's character set (use utf8mb4 on MySQL and "
        f"MariaDB) ({type(exc).__name__}: {exc})"
    )


# -- PostgreSQL's error classes that mean "cannot serve us now" ----------------------------
#: SQLSTATE classes: 08 connection exception, 28 invalid authorization (wrong password,
#: no such role), 3D invalid catalog name (no such database), 53 insufficient resources
#: (too many connections), 57P shutting down / cannot connect now, 58 system error.
_UNAVAILABLE_SQLSTATES = ("08", "28", "3D", "53", "57P", "58")


def unavailable_sqlstate(sqlstate: str | None) -> bool:
    """Whether a PostgreSQL error with this SQLSTATE means the store is unavailable."""
    return bool(sqlstate) and str(sqlstate).startswith(_UNAVAILABLE_SQLSTATES)


# -- lock conflicts the server ends by rolling a statement back -----------------------------
#: PostgreSQL's serialization_failure (a row another transaction changed since this one's
#: snapshot: REPEATABLE READ and SERIALIZABLE app engines) and deadlock_detected; MySQL's
#: deadlock also reports 40001.
_LOCK_CONFLICT_SQLSTATES = ("40001", "40P01")
#: MySQL/MariaDB: ER_LOCK_DEADLOCK (InnoDB rolled back the transaction it chose to end).
_MYSQL_DEADLOCK = 1213


def lock_conflict(exc: BaseException) -> bool:
    """Whether the server ended ``exc``'s statement to settle a lock conflict with another
    transaction: a deadlock, or a row changed under a REPEATABLE READ or SERIALIZABLE
    snapshot. The statement's transaction was rolled back, so it changed nothing, and each
    of ormsession's statements is a transaction of its own: running it again is its answer
    (the servers' own advice), not an outage."""
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if sqlstate in _LOCK_CONFLICT_SQLSTATES:
        return True
    # MariaDB Connector/Python keeps the code in errno, the other MySQL drivers in args[0].
    code = getattr(original, "errno", None)
    if code is None and original is not None and original.args:
        code = original.args[0]
    return code == _MYSQL_DEADLOCK


def conflict_pause(attempt: int) -> float:
    """Seconds to wait before the ``attempt``-th run of a statement a lock conflict ended:
    random (two statements that deadlocked each other must not meet again in step), up to
    1, 2, 4... 32 ms. The operation's deadline still bounds the whole."""
    return random.uniform(0, 0.001 * 2 ** min(attempt - 1, 5))  # noqa: S311


# -- MySQL's max_allowed_packet ---------------------------------------------------------------
#: The server's limit on one packet (one statement with its data).
MAX_PACKET_QUERY = "SELECT @@max_allowed_packet"
#: MySQL's and MariaDB's least max_allowed_packet: a smaller statement is never over it.
MIN_PACKET_LIMIT = 1024
#: ER_NET_PACKET_TOO_LARGE: sent (when the client is still reading) just before the server
#: drops the connection of a client whose packet was over the limit.
_PACKET_TOO_LARGE = 1153


def packet_too_large(exc: BaseException) -> bool:
    """A MySQL driver's error for a packet over ``max_allowed_packet`` (the connection is
    dropped by the server: discard it)."""
    return bool(exc.args) and exc.args[0] == _PACKET_TOO_LARGE


def payload_size(sql: str, params: Any, bytes_size: Callable[[bytes], int] = len) -> int:
    """Roughly the bytes a statement sends: its text and its text or bytes parameters;
    ``bytes_size``: what the driver sends for a bytes parameter (:func:`bytes_sent_by`)."""
    values = params.values() if isinstance(params, dict) else params
    return len(sql) + sum(
        bytes_size(value) if isinstance(value, bytes) else len(value)
        for value in values
        if isinstance(value, bytes | str)
    )


def bytes_sent_by(dialect: Dialect) -> Callable[[bytes], int]:
    """How many bytes ``dialect``'s driver sends for a bytes parameter. PyMySQL 1.2 writes
    it as a hex literal, twice its size (older releases escaped it byte for byte): its own
    escaping function says which, exactly. Called only before a retry, never per statement."""
    if dialect.driver == "pymysql":
        escape = dialect.loaded_dbapi.converters.escape_bytes
        return lambda value: len(escape(value))
    return len


def server_packet_error(size: int, limit: int) -> SessionTooLargeError:
    return SessionTooLargeError(
        size,
        limit,
        what="the session's write",
        advice=("the MySQL server's max_allowed_packet; raise it, or set max_data_bytes below it"),
    )
