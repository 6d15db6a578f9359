"""The registry's entry points for SQL URLs (``sqlite``, ``postgresql``, ``mysql``,
``mariadb``) and for an app's own SQLAlchemy engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ormsession.errors import ConfigurationError
from ormsession.repositories.sql.urls import parse_sql_url

if TYPE_CHECKING:
    from ormsession.config import Config

__all__ = ["open_store", "store_for_engine"]


def wants_auto_migrate(url: str, config: Config) -> bool:
    """Migrate at start-up when asked; by default only for SQLite, the embedded store whose
    file the app owns outright (server databases are migrated by a deploy step)."""
    if config.auto_migrate is not None:
        return config.auto_migrate
    return parse_sql_url(url, want_async=None).get_backend_name() == "sqlite"


def open_store(url: str, config: Config, *, want_async: bool) -> Any:
    options: dict[str, Any] = {
        "table_name": config.table_name,
        "timeout": config.store_timeout,
        "pool_size": config.pool_size,
        "schema_check": config.schema_check,
        "auto_migrate": wants_auto_migrate(url, config),
    }
    if want_async:
        from ormsession.repositories.sql.async_repository import AsyncSqlRepository

        return AsyncSqlRepository.from_url(url, **options)
    from ormsession.repositories.sql.repository import SqlRepository

    return SqlRepository.from_url(url, **options)


def store_for_engine(engine: Any, config: Config, *, want_async: bool) -> Any:
    """A repository in the app's own ``Engine`` (``AsyncEngine`` with ``want_async``): its
    pool is shared, and ormsession never disposes it nor joins the app's transactions."""
    is_async = type(engine).__name__ == "AsyncEngine"
    if is_async and not want_async:
        raise ConfigurationError("that is an AsyncEngine: use ormsession.configure_async()")
    if want_async and not is_async:
        raise ConfigurationError(
            "configure_async(engine=...) needs an AsyncEngine; for a sync Engine use "
            "ormsession.configure()"
        )
    if want_async:
        from ormsession.repositories.sql.async_repository import AsyncSqlRepository

        return AsyncSqlRepository(
            engine,
            table_name=config.table_name,
            schema_check=config.schema_check,
            auto_migrate=bool(config.auto_migrate),
            timeout=config.store_timeout,
        )
    if not hasattr(engine, "connect"):
        raise ConfigurationError(f"engine must be a SQLAlchemy Engine, not {type(engine)!r}")
    from ormsession.repositories.sql.repository import SqlRepository

    if config.auto_migrate:
        from ormsession.schema import upgrade

        upgrade(engine, table_name=config.table_name, timeout=config.store_timeout)
    return SqlRepository(
        engine,
        table_name=config.table_name,
        schema_check=config.schema_check,
        timeout=config.store_timeout,
    )
