"""The SQL store (PostgreSQL, MySQL/MariaDB, SQLite): model, repositories, engines."""

from ormsession.repositories.sql.model import Session, session_table
from ormsession.repositories.sql.repository import SqlRepository

__all__ = ["AsyncSqlRepository", "Session", "SqlRepository", "session_table"]


def __getattr__(name: str) -> object:
    # The asyncio twin needs SQLAlchemy's asyncio extension (greenlet): import it on demand.
    if name == "AsyncSqlRepository":
        from ormsession.repositories.sql.async_repository import AsyncSqlRepository

        return AsyncSqlRepository
    raise AttributeError(name)
