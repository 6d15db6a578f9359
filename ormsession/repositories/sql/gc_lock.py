"""The SQL stores' gc lock: only one process at a time deletes expired rows of one table.

Every node of a site may run ``ormsession gc`` from cron, or a background runner
(:mod:`ormsession.gc`); the lock makes all but one of them skip the pass instead of racing
the same index range. It is tried, never waited for: a node that finds it held has nothing
to do, because another node is doing it.

- **PostgreSQL**: ``pg_try_advisory_lock(key)``, a *session-level* advisory lock, on a
  connection of its own held for the whole run (the batches run on other pooled
  connections, each its own short statement). Not ``pg_try_advisory_xact_lock`` per batch:
  that serialises single batches only, so two nodes would take turns, both running gc to
  the end (twice the load, each one's progress meaningless), and the second could not tell
  that it should stop. The server drops a session-level lock with its connection, so a gc
  process that dies leaves no stale lock. ``key``: 64 bits of SHA-256 of the table name;
  advisory locks are per database, so two databases never share one.
- **MySQL/MariaDB**: ``GET_LOCK(name, 0)`` on a connection held for the run, likewise
  released by ``RELEASE_LOCK`` or the connection's end. The name space is the whole
  server, so ``name`` carries the database's name too (hashed when over the 64-character
  limit).
- **SQLite**: ``flock`` on a sidecar file next to the database (``<database>.gc-lock``,
  left in place: removing a lock file races its next user); the kernel drops it when the
  process dies. An in-memory database is private to its process: a lock in the process.

A session pooler in *transaction* mode (PgBouncer's ``pool_mode = transaction``) hands
each transaction to any server connection, which breaks session-level advisory locks: give
the gc command a direct (or session-pooled) URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from ormsession.gc import held_in_process, tried_without_waiting
from ormsession.repositories.sql.errors import wrap_sql_error
from ormsession.repositories.sql.statements import BUFFERED

if TYPE_CHECKING:  # not at run time: a sync-only install has no greenlet
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "advisory_key",
    "async_gc_lock",
    "gc_lock",
    "lock_name",
    "sidecar_path",
]

# MySQL's GET_LOCK names are at most 64 characters.
_MYSQL_NAME_LIMIT = 64


def advisory_key(table_name: str) -> int:
    """PostgreSQL's advisory lock key for gc of ``table_name``: a signed 64-bit integer."""
    digest = hashlib.sha256(f"ormsession-gc:{table_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_name(database: str | None, table_name: str) -> str:
    """MySQL's ``GET_LOCK`` name for gc of ``table_name`` in ``database`` (server-wide)."""
    name = f"ormsession-gc:{database or ''}.{table_name}"
    if len(name) <= _MYSQL_NAME_LIMIT:
        return name
    return "ormsession-gc:" + hashlib.sha256(name.encode()).hexdigest()[:48]


def sidecar_path(url: URL) -> Path | None:
    """The lock file of a SQLite database (None: in memory, so a lock in the process)."""
    database = url.database
    if not database or database == ":memory:" or "mode=memory" in database:
        return None
    if database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database).resolve().with_name(Path(database).name + ".gc-lock")


# -- the statements ---------------------------------------------------------------------------
def _statements(url: URL, table_name: str) -> tuple[str, str, dict[str, Any]]:
    """(try, release, parameters) for a server's lock."""
    if url.get_backend_name() == "postgresql":
        key = {"key": advisory_key(table_name)}
        return "SELECT pg_try_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)", key
    name = {"name": lock_name(url.database, table_name)}
    return "SELECT GET_LOCK(:name, 0)", "SELECT RELEASE_LOCK(:name)", name


_file_locks_in_process: dict[str, threading.Lock] = {}


@contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the lock then covers this process only
        with tried_without_waiting(
            _file_locks_in_process.setdefault(str(path), threading.Lock())
        ) as held:
            yield held
        return

    # flock, not fcntl's POSIX locks: those belong to the process, so two threads (or two
    # managers) of one process would both "hold" them.
    handle: IO[bytes] = open(path, "ab")  # noqa: SIM115 -- closed below
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


# -- sync ---------------------------------------------------------------------------------------
@contextmanager
def gc_lock(engine: Engine, table_name: str) -> Iterator[bool]:
    """Try the gc lock of ``table_name``; yield whether this process holds it now."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        path = sidecar_path(url)
        with held_in_process(engine) if path is None else _file_lock(path) as held:
            yield held
        return
    take, release, parameters = _statements(url, table_name)
    try:
        connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT", **BUFFERED)
    except SQLAlchemyError as exc:
        raise wrap_sql_error(exc, engine, "gc lock") from exc
    with connection:
        held = _scalar(connection, take, parameters, engine)
        try:
            yield held
        finally:
            if held:
                _release(connection, release, parameters)


def _scalar(connection: Connection, sql: str, parameters: dict[str, Any], engine: Engine) -> bool:
    try:
        return bool(connection.execute(text(sql), parameters).scalar())
    except SQLAlchemyError as exc:
        raise wrap_sql_error(exc, engine, "gc lock") from exc


def _release(connection: Connection, sql: str, parameters: dict[str, Any]) -> None:
    try:
        connection.execute(text(sql), parameters)
    except SQLAlchemyError:
        # The server frees the lock with the connection: make sure it ends.
        connection.invalidate()


# -- asyncio ------------------------------------------------------------------------------------
@asynccontextmanager
async def async_gc_lock(engine: AsyncEngine, table_name: str) -> AsyncIterator[bool]:
    """:func:`gc_lock` on an ``AsyncEngine`` (the SQLite file lock is taken without waiting,
    so it does not block the event loop)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        path = sidecar_path(url)
        with held_in_process(engine.sync_engine) if path is None else _file_lock(path) as held:
            yield held
        return
    take, release, parameters = _statements(url, table_name)
    connection = engine.connect()
    try:
        await connection.start()
        await connection.execution_options(isolation_level="AUTOCOMMIT", **BUFFERED)
    except SQLAlchemyError as exc:
        await connection.close()
        raise wrap_sql_error(exc, engine.sync_engine, "gc lock") from exc
    try:
        try:
            held = await _async_scalar(connection, take, parameters, engine)
        except BaseException:
            # Cancelled as the reply came in (a runner stopped, a request cancelled), the
            # server may hold the lock for this connection all the same, and would keep it
            # for as long as the pool kept the connection: every other node's gc would skip.
            await asyncio.shield(connection.invalidate())
            raise
        try:
            yield held
        finally:
            if held:
                await _async_release(connection, release, parameters)
    finally:
        await connection.close()


async def _async_scalar(
    connection: AsyncConnection, sql: str, parameters: dict[str, Any], engine: AsyncEngine
) -> bool:
    try:
        return bool((await connection.execute(text(sql), parameters)).scalar())
    except SQLAlchemyError as exc:
        raise wrap_sql_error(exc, engine.sync_engine, "gc lock") from exc


async def _async_release(connection: AsyncConnection, sql: str, parameters: dict[str, Any]) -> None:
    try:
        await connection.execute(text(sql), parameters)
    except BaseException as exc:  # a failure, or a cancellation mid-release
        await asyncio.shield(connection.invalidate())
        if not isinstance(exc, SQLAlchemyError):
            raise
