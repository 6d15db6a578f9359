"""The SQL store (PostgreSQL, MySQL/MariaDB, SQLite), sync and asyncio.

Layout (the same module names as every store package, plus the SQL-specific ones):

- :mod:`.urls`: SQL URLs parsed and checked (no I/O);
- :mod:`.clients`: the engines ormsession creates when the app hands in none;
- :mod:`.model`, :mod:`.types`: the ``session`` table and its column types;
- :mod:`.statements`: every operation as one statement, built once per table and dialect;
- :mod:`.moves`: rename and delete, the two operations of several statements (moved
  markers), as flows over those statements;
- :mod:`.dbapi`, :mod:`.async_dbapi`: those statements run on the known drivers' own
  connections (one round trip, without SQLAlchemy's per-call execution layer);
- :mod:`.repository` / :mod:`.async_repository`: the twins;
- :mod:`.errors`: driver errors into ormsession's; :mod:`.factory`: the registry's entry points.

See ``docs/stores/sql.md``.
"""

from ormsession.repositories.sql.model import Session, session_table
from ormsession.repositories.sql.repository import SqlRepository

__all__ = ["AsyncSqlRepository", "Session", "SqlRepository", "session_table"]


def __getattr__(name: str) -> object:
    # The asyncio twin needs SQLAlchemy's asyncio extension (greenlet): import it on demand.
    if name == "AsyncSqlRepository":
        from ormsession.repositories.sql.async_repository import AsyncSqlRepository

        return AsyncSqlRepository
    raise AttributeError(name)
