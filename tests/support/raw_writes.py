"""Writing hostile values into a store behind ormsession's back, as a bug, an operator or
an attacker with write access could: the hostile-input suite then opens the session.

Each function takes a manager from ``tests.support.stores.open_manager`` (sync, or async
behind its facade) and writes through the store's own driver, never through ormsession.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from ormsession.ids import storage_key


def _inner(manager: Any) -> Any:
    return getattr(manager, "inner", manager)


def _run(manager: Any, value: Any) -> Any:
    """``value``, awaited on the facade's loop when the manager is the async twin."""
    if hasattr(value, "__await__"):
        return manager._runner.run(value)
    return value


#: The sync driver a separate engine reaches each database with, whatever the manager uses.
_SYNC_DRIVERS = {"postgresql": "psycopg2", "mysql": "pymysql", "mariadb": "pymysql"}


def _own_sql_engine(manager: Any) -> Any:
    """A sync engine of its own on the manager's SQL database (another connection, another
    driver maybe: what an operator or an attacker with database access uses)."""
    engine = _inner(manager).repository.engine
    url = getattr(engine, "sync_engine", engine).url
    url = make_url(url.render_as_string(hide_password=False))
    backend = url.get_backend_name()
    driver = _SYNC_DRIVERS.get(backend, "pysqlite")
    return create_engine(url.set(drivername=f"{backend}+{driver}"), poolclass=NullPool)


def sql_execute(manager: Any, statement: str, **params: Any) -> None:
    """``statement`` on the manager's SQL database, through a sync engine of its own."""
    own = _own_sql_engine(manager)
    try:
        with own.begin() as connection:
            connection.execute(text(statement), params)
    finally:
        own.dispose()


def sql_rows(manager: Any, table: str = "session") -> list[dict[str, Any]]:
    """Every row of ``table``, every column, as the database returns them, read through a
    sync engine of its own."""
    own = _own_sql_engine(manager)
    try:
        with own.connect() as connection:
            return [
                dict(row._mapping) for row in connection.execute(text(f"SELECT * FROM {table}"))
            ]
    finally:
        own.dispose()


def sql_set_data(manager: Any, session_id: str, expression: str, **params: Any) -> None:
    """Set the data column of ``session_id``'s row to the SQL ``expression``."""
    sql_execute(
        manager,
        f"UPDATE session SET session_data = {expression} WHERE session_key = :key",
        key=storage_key(session_id),
        **params,
    )


def redis_key(manager: Any, session_id: str) -> tuple[Any, str]:
    """The Redis client of the manager's repository and ``session_id``'s key."""
    repository = _inner(manager).repository
    return repository.client, repository.layout.session(storage_key(session_id))


def redis_replace(manager: Any, session_id: str, command: str, *args: Any) -> None:
    """Delete the session's key, then ``command key *args`` (SET, RPUSH, HSET...)."""
    client, key = redis_key(manager, session_id)
    _run(manager, client.delete(key))
    _run(manager, client.execute_command(command, key, *args))


def couchbase_upsert(manager: Any, session_id: str, value: Any) -> None:
    """Replace the session's document with ``value`` (a dict is stored as JSON)."""
    inner = _inner(manager)
    repository = inner.repository
    collection = getattr(repository, "collection", None) or repository._collection
    document_id = repository.context.layout.document_key(storage_key(session_id))
    _run(manager, collection.upsert(document_id, value))
