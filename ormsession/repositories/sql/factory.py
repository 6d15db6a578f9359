"""Building SQL repositories from URLs and settings (used by the registry)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ormsession.repositories.sql.engine import parse_sql_url
from ormsession.repositories.sql.repository import SqlRepository

if TYPE_CHECKING:
    from ormsession.repositories.sql.async_repository import AsyncSqlRepository
    from ormsession.settings import OrmsessionSettings

__all__ = ["open_async_repository", "open_repository"]


def wants_auto_migrate(url: str, settings: OrmsessionSettings) -> bool:
    """Migrate at start-up when asked; by default only for SQLite, the embedded store whose
    file the app owns outright (server databases are migrated by a deploy step)."""
    if settings.auto_migrate is not None:
        return settings.auto_migrate
    return parse_sql_url(url, want_async=None).get_backend_name() == "sqlite"


def _options(url: str, settings: OrmsessionSettings) -> dict[str, Any]:
    return {
        "table_name": settings.table_name,
        "connect_timeout": settings.connect_timeout,
        "pool_size": settings.pool_size,
        "schema_check": settings.schema_check,
        "auto_migrate": wants_auto_migrate(url, settings),
    }


def open_repository(url: str, settings: OrmsessionSettings) -> SqlRepository:
    return SqlRepository.from_url(url, **_options(url, settings))


def open_async_repository(url: str, settings: OrmsessionSettings) -> AsyncSqlRepository:
    from ormsession.repositories.sql.async_repository import AsyncSqlRepository

    return AsyncSqlRepository.from_url(url, **_options(url, settings))
