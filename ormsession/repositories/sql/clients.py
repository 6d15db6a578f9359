"""Creating the SQLAlchemy engine ormsession owns (when the app did not hand one in)."""

from __future__ import annotations

import math
import os
import weakref
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import NoSuchModuleError
from sqlalchemy.pool import StaticPool

from ormsession.errors import MissingDriverError
from ormsession.repositories.sql.deadlines import bound_connects
from ormsession.repositories.sql.pools import AsyncSessionQueuePool, SessionQueuePool
from ormsession.repositories.sql.urls import check_sqlite_directory, extra_for, parse_sql_url

__all__ = ["create_async_session_engine", "create_session_engine"]


def driver_connect_args(url: URL, timeout: float) -> dict[str, Any]:
    """Timeouts for the driver, unless the URL already sets them: a dead database must
    give an error within the timeout, not hang a request. (The synchronous engine's connect
    hook then narrows them to what each operation has left: see deadlines.py.) SQLite's
    ``timeout`` is its busy timeout: how long a write waits for another's lock."""
    backend, driver, query = url.get_backend_name(), url.get_driver_name(), url.query
    if driver == "asyncpg" and "timeout" not in query:
        return {"timeout": timeout}
    if driver == "aiosqlite" and "timeout" not in query:
        return {"timeout": timeout}
    if (
        backend == "postgresql"
        and driver in ("psycopg2", "psycopg", "psycopg_async")
        and "connect_timeout" not in query
    ):
        return {"connect_timeout": max(1, math.ceil(timeout))}  # libpq: whole seconds
    if driver in ("mysqldb", "mariadbconnector") and "connect_timeout" not in query:
        # libmariadb/libmysqlclient: whole seconds (a float is a TypeError), for the TCP
        # connect and the server's greeting both.
        return {"connect_timeout": max(1, math.ceil(timeout))}
    if backend in ("mysql", "mariadb") and "connect_timeout" not in query:
        return {"connect_timeout": timeout}
    if backend == "sqlite" and "timeout" not in query:
        return {"timeout": timeout}
    return {}


def engine_options(
    parsed: URL, *, timeout: float, pool_size: int | None, want_async: bool = False
) -> dict[str, Any]:
    """create_engine() options tuned for single-statement session operations.

    Every repository operation is one atomic statement, so the engine runs in autocommit:
    no BEGIN/COMMIT round trips, no transaction held between statements. Parameters are
    hidden from error messages (they hold session data). Waiting for a pooled connection
    ends with the operation's deadline (the synchronous pool is told each operation's; the
    asyncio repository cancels the whole operation at its deadline), never after
    SQLAlchemy's default 30 s, and connections go to waiters in turn (see pools.py).
    """
    kwargs: dict[str, Any] = {
        "isolation_level": "AUTOCOMMIT",
        # Autocommit leaves nothing to roll back when a connection goes back to the pool,
        # so its return costs no round trip (and the asyncio repository relies on a
        # return that does no I/O: see AsyncSqlRepository._on_pooled_connection).
        "pool_reset_on_return": None,
        "hide_parameters": True,
        "connect_args": driver_connect_args(parsed, timeout),
    }
    backend = parsed.get_backend_name()
    if is_in_memory(parsed):
        kwargs["poolclass"] = StaticPool  # one shared in-memory database
    else:
        kwargs["pool_timeout"] = timeout
        kwargs["poolclass"] = AsyncSessionQueuePool if want_async else SessionQueuePool
    if backend == "sqlite":
        kwargs["connect_args"]["check_same_thread"] = False
    else:
        kwargs["pool_recycle"] = 3600  # MySQL's wait_timeout drops idle connections
        if pool_size is not None:
            kwargs["pool_size"] = pool_size
    return kwargs


def create_session_engine(
    url: str | URL, *, timeout: float = 5.0, pool_size: int | None = None
) -> Engine:
    """The engine ormsession owns for a synchronous SQL URL (see :func:`engine_options`);
    its connects are bounded by each operation's deadline (:func:`bound_connects`)."""
    parsed = parse_sql_url(url)
    check_sqlite_directory(parsed)
    backend = parsed.get_backend_name()
    kwargs = engine_options(parsed, timeout=timeout, pool_size=pool_size)
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        extra = extra_for(parsed)
        hint = f": pip install 'ormsession[{extra}]'" if extra else ""
        raise MissingDriverError(
            f"the driver for {parsed.drivername!r} is not installed{hint}"
        ) from exc
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        event.listen(engine, "connect", _sqlite_wal)
    bound_connects(engine, timeout)
    _new_pool_in_forked_children(engine, parsed)
    return engine


def create_async_session_engine(
    url: str | URL, *, timeout: float = 5.0, pool_size: int | None = None
) -> Any:
    """The ``AsyncEngine`` ormsession owns for an asyncio SQL URL."""
    parsed = parse_sql_url(url, want_async=True)
    check_sqlite_directory(parsed)
    backend = parsed.get_backend_name()
    try:
        from sqlalchemy.ext.asyncio import create_async_engine
    except ImportError as exc:  # SQLAlchemy 2.1 no longer installs greenlet by itself
        raise MissingDriverError(
            "asyncio SQL needs SQLAlchemy's asyncio extra: pip install 'ormsession[async]'"
        ) from exc
    kwargs = engine_options(parsed, timeout=timeout, pool_size=pool_size, want_async=True)
    try:
        engine = create_async_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        extra = extra_for(parsed, want_async=True)
        raise MissingDriverError(
            f"the driver for {parsed.drivername!r} is not installed: "
            f"pip install 'ormsession[{extra}]'"
        ) from exc
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        event.listen(engine.sync_engine, "connect", _sqlite_wal)
    _new_pool_in_forked_children(engine.sync_engine, parsed)
    return engine


def _new_pool_in_forked_children(engine: Engine, parsed: URL) -> None:
    """A pre-fork server (gunicorn --preload, uWSGI without lazy-apps) forks its workers
    after importing the app, and so after ormsession's start-up check put a connection in
    the pool: every worker would then talk on that one socket, and read the replies meant
    for the others (or a protocol error). A forked child starts with a pool of its own;
    ``close=False`` leaves the parent's connections to the parent (SQLAlchemy's recipe).
    An in-memory SQLite database lives in its one connection: the child keeps its copy."""
    if is_in_memory(parsed):
        return
    reference = weakref.ref(engine)

    def new_pool() -> None:
        alive = reference()
        if alive is not None:
            alive.dispose(close=False)

    os.register_at_fork(after_in_child=new_pool)


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run while one writer writes: far fewer "database is locked" errors.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def is_in_memory(parsed: URL) -> bool:
    """Whether the URL names an in-memory SQLite database: one per engine, gone with it."""
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")
