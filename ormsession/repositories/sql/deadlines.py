"""One deadline per synchronous SQL operation: the pool wait, connecting and the handshake,
the statement and a retry all end by ``store_timeout`` after the operation started.

The repository starts each operation with :func:`operation_deadline`, which publishes the
deadline in a context variable for the two places it cannot pass it to directly:

- the pool of ormsession's own engine (:mod:`.pools`) waits for a free connection only
  until the deadline (SQLAlchemy's own ``pool_timeout`` is one fixed number, 30 s by
  default);
- its connect hook (:func:`bound_connects`) gives the driver what is left as its connect
  and handshake timeouts.

The statement itself is bounded per driver by a :class:`StatementBound`
(:func:`statement_bound`): PyMySQL's own read and write timeouts, SQLite's busy timeout,
and for the drivers on C client libraries (psycopg2 and psycopg 3 on libpq, mysqlclient and
MariaDB Connector/Python on libmariadb), whose read timeouts are whole seconds fixed when
connecting, or absent, the :mod:`watchdog`.

An app's own engine keeps its pool and connect settings (ormsession does not change an
engine it does not own): there, only the statement is bounded here.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Dialect, Engine, event

from ormsession.repositories.sql.watchdog import WATCHDOG

__all__ = [
    "SLACK",
    "StatementBound",
    "bound_connects",
    "current_deadline",
    "operation_deadline",
    "run_limit",
    "statement_bound",
]

#: The deadline (``time.monotonic()`` seconds) of the operation running in this context.
_DEADLINE: ContextVar[float | None] = ContextVar("ormsession_sql_deadline", default=None)

#: A statement's own bound may end this much after the operation's deadline before it is
#: lowered for that statement: lowering it costs PyMySQL a ``settimeout`` (a system call)
#: and SQLite a PRAGMA, which the usual operation, whose checkout took microseconds, skips.
SLACK = 0.01


def current_deadline() -> float | None:
    return _DEADLINE.get()


class operation_deadline:  # noqa: N801 (used as a function: ``with operation_deadline(s)``)
    """The deadline of an operation that starts now, published to the pool and the
    connect hook for its duration (``with operation_deadline(seconds) as deadline``).

    A class rather than a ``@contextmanager`` generator: every SQL operation enters one,
    and the generator's machinery cost about as many instructions as the rest of the
    deadline handling together (measured with callgrind, docs/performance.md)."""

    __slots__ = ("_deadline", "_token")

    def __init__(self, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds

    def __enter__(self) -> float:
        self._token = _DEADLINE.set(self._deadline)
        return self._deadline

    def __exit__(self, *exc_info: object) -> None:
        _DEADLINE.reset(self._token)


def _remaining(default: float) -> float:
    deadline = _DEADLINE.get()
    return default if deadline is None else deadline - time.monotonic()


# -- connecting ------------------------------------------------------------------------------
def bound_connects(engine: Engine, timeout: float) -> None:
    """Give every connect of ``engine`` (ormsession's own) what is left of the operation's
    deadline (``timeout`` outside an operation) for connecting and the handshake."""
    dialect = engine.dialect
    driver = dialect.driver
    if driver == "pymysql":
        event.listen(engine, "do_connect", _pymysql_connect(timeout))
    elif driver in _SOCKETS:
        event.listen(engine, "do_connect", _threaded_connect(timeout))


def _pymysql_connect(timeout: float) -> Callable[..., Any]:
    def connect(dialect: Dialect, record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
        left = max(_remaining(timeout), 0.001)
        # connect_timeout bounds only the TCP connect: a server that accepts and never
        # sends its greeting is bounded by the read timeout, which PyMySQL applies to
        # the handshake's reads too.
        cparams["connect_timeout"] = min(cparams.get("connect_timeout") or left, left)
        cparams["read_timeout"] = cparams["write_timeout"] = left
        connection = _pymysql_connection_class()(*cargs, **cparams)
        # From now on each statement's bound is this operation's business (PyMySQLBound):
        # the connection's own is the whole timeout, not what this operation had left.
        connection._read_timeout = connection._write_timeout = timeout
        return connection

    return connect


@functools.cache
def _pymysql_connection_class() -> Any:
    """PyMySQL's connection class, reusing one TLS context for its "preferred" mode.

    Given no TLS option, PyMySQL 1.2 tries TLS and falls back to plain, and builds a new
    ``SSLContext`` on every connect for it, loading the system's CA store (33 ms on the
    test machine, with the interpreter lock held: 64 workers connecting at once queued
    behind each other for over a second), though that context then verifies nothing. The
    context is the same every time, so ormsession's engine builds it once.
    """
    from pymysql.connections import Connection

    build = Connection._create_ssl_ctx  # type: ignore[attr-defined]
    shared: dict[str, Any] = {}

    class _Connection(Connection):
        def _create_ssl_ctx(self, sslp: Any) -> Any:
            if isinstance(sslp, dict) and not sslp:  # "preferred": nothing to verify
                if "context" not in shared:
                    shared["context"] = build(self, sslp)
                return shared["context"]
            return build(self, sslp)

    return _Connection


def _threaded_connect(timeout: float) -> Callable[..., Any]:
    """libpq and libmariadb take whole seconds (``connect_timeout=1`` is their least), so
    the connect runs on a thread of its own that the operation stops waiting for at the
    deadline; the library gives up on its own within a second after that, and a
    connection it made too late is closed."""

    def connect(dialect: Dialect, record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
        # cparams' connect_timeout (driver_connect_args: the whole timeout, rounded up)
        # ends the abandoned thread: libmariadb's covers the server's greeting too.
        left = _remaining(timeout)
        try:
            return call_within(left, lambda: dialect.connect(*cargs, **cparams), _close_quietly)
        except TimeoutError as exc:
            # As the driver's own error, which SQLAlchemy's pool wraps like any other.
            raise dialect.loaded_dbapi.OperationalError(str(exc)) from exc

    return connect


def call_within(seconds: float, call: Callable[[], Any], discard: Callable[[Any], None]) -> Any:
    """``call()`` on a thread of its own, waited for ``seconds`` at most; then
    ``TimeoutError``, and ``discard`` gets whatever the call returns later."""
    done = threading.Event()
    outcome: list[Any] = []
    abandoned = False
    lock = threading.Lock()

    def run() -> None:
        try:
            result: Any = (True, call())
        except BaseException as exc:  # handed to the waiting thread, raised there
            result = (False, exc)
        with lock:
            late = abandoned
            outcome.append(result)
        done.set()
        if late and result[0]:
            discard(result[1])

    threading.Thread(target=run, name="ormsession-sql-connect", daemon=True).start()
    if not done.wait(max(seconds, 0.0)):
        with lock:
            abandoned = not outcome
        if abandoned:
            raise TimeoutError(f"no connection within {seconds:.3g} s")
    succeeded, value = outcome[0]
    if succeeded:
        return value
    raise value


def _close_quietly(connection: Any) -> None:
    try:
        connection.close()
    except Exception:  # a connection nobody waits for any more: nothing to report to
        return


# -- the statement ---------------------------------------------------------------------------
class StatementBound:
    """How one driver's statement is made to end by a deadline: :meth:`start` before the
    statement (on the DBAPI connection it runs on), :meth:`finish` after it, which says
    whether the bound cut the connection (then it must be discarded)."""

    def start(self, raw: Any, deadline: float) -> Any:
        return None

    def finish(self, raw: Any, state: Any) -> bool:
        return False


class _PyMySQLBound(StatementBound):
    """PyMySQL applies ``_read_timeout``/``_write_timeout`` to each socket read and write
    (and times out with a lost-connection error, closing the connection itself). A
    connection's own bound (``own``, the whole timeout on ormsession's engine; the app's
    setting on an app's engine) is lowered to what the operation has left only when it
    would end later than the deadline, and restored afterwards."""

    def start(self, raw: Any, deadline: float) -> Any:
        left = deadline - time.monotonic()
        current = raw._read_timeout
        if current is not None and current <= left + SLACK and raw._write_timeout is not None:
            return None
        saved = (current, raw._write_timeout)
        raw._read_timeout = raw._write_timeout = max(left, 0.001)
        return saved

    def finish(self, raw: Any, state: Any) -> bool:
        if state is not None:
            raw._read_timeout, raw._write_timeout = state
        return False


class _WatchdogBound(StatementBound):
    """Drivers without a read timeout of their own (libpq's), or with one in whole seconds
    fixed at connect (libmariadb's): the watchdog shuts the socket down at the deadline."""

    def __init__(self, fileno: Callable[[Any], int]) -> None:
        self._fileno = fileno

    def start(self, raw: Any, deadline: float) -> Any:
        return WATCHDOG.arm(self._fileno(raw), deadline)

    def finish(self, raw: Any, state: Any) -> bool:
        return WATCHDOG.disarm(state)


class _SqliteBound(StatementBound):
    """SQLite waits for a held write lock up to its busy timeout, which ormsession's engine
    sets to the whole timeout when connecting; lowered by a PRAGMA (a local call) only for
    an operation that has less left."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout

    def start(self, raw: Any, deadline: float) -> Any:
        left = deadline - time.monotonic()
        if left + SLACK >= self._timeout:
            return None
        raw.execute(f"PRAGMA busy_timeout = {max(int(left * 1000), 1)}")
        return True

    def finish(self, raw: Any, state: Any) -> bool:
        if state is not None:
            try:
                raw.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            except sqlite3.Error:
                return True  # a connection whose timeout is not ours: do not reuse it
        return False


_UNBOUNDED = StatementBound()


def _own_fileno(raw: Any) -> int:
    return int(raw.fileno())


def _mariadb_fileno(raw: Any) -> int:
    # Not ``raw.socket``: that builds a socket object owning the descriptor, which closes
    # it when collected.
    return int(raw._get_socket())


#: Drivers bounded by the watchdog, and how to find a DBAPI connection's socket.
_SOCKETS: dict[str, Callable[[Any], int]] = {
    "psycopg2": _own_fileno,
    "psycopg": _own_fileno,
    "mysqldb": _own_fileno,
    "mariadbconnector": _mariadb_fileno,
}


def statement_bound(dialect: Dialect, *, own_engine: bool, timeout: float) -> StatementBound:
    """The bound for statements on ``dialect``'s connections; ``own_engine`` when they come
    from ormsession's engine (connected by :func:`bound_connects`)."""
    driver = dialect.driver
    if driver == "pymysql":
        return _PyMySQLBound()
    fileno = _SOCKETS.get(driver)
    if fileno is not None:
        return _WatchdogBound(fileno)
    if driver == "pysqlite" and own_engine:
        return _SqliteBound(timeout)
    # An app's SQLite engine keeps its busy timeout (the ``timeout`` connect argument);
    # other drivers have no bound ormsession knows of (see docs/reliability.md).
    return _UNBOUNDED


@contextmanager
def run_limit(connection: Any, seconds: float) -> Iterator[None]:
    """Every statement run on SQLAlchemy ``connection`` inside the block ends within
    ``seconds`` of its start (a migration run: a longer limit than one operation's, so the
    connection's own read timeout is raised for it, not only lowered)."""
    raw = connection.connection.dbapi_connection
    driver = connection.dialect.driver
    deadline = time.monotonic() + seconds
    if driver == "pymysql":
        saved = (raw._read_timeout, raw._write_timeout)
        raw._read_timeout = raw._write_timeout = seconds
        try:
            yield
        finally:
            raw._read_timeout, raw._write_timeout = saved
    elif driver in _SOCKETS:
        token = WATCHDOG.arm(_SOCKETS[driver](raw), deadline)
        try:
            yield
        finally:
            if WATCHDOG.disarm(token):
                connection.invalidate()
    else:
        yield
