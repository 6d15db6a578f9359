"""Alembic environment of ormsession's migrations.

Used by `alembic upgrade head` from a checkout, by `ormsession db ...` and by
``ormsession.schema.upgrade()``. The database URL comes, in order, from a connection handed
in by code, ``-x url=...``, ``sqlalchemy.url`` in the ini file, then ormsession's settings
(``ORMSESSION_URL`` / ``.env``). The table name likewise (``-x table=...`` or
``ORMSESSION_TABLE_NAME``).
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from ormsession.repositories.sql.model import session_table
from ormsession.schema import TABLE_NAME_ATTRIBUTE, version_table_for

config = context.config

# `alembic ...` from a checkout: the ini's logging section, as `alembic init`'s env.py does,
# so the command prints its usual lines. No file (ormsession.schema, `ormsession db`): the
# process's own logging is left as it is.
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _settings() -> Any:
    from ormsession.settings import OrmsessionSettings

    return OrmsessionSettings()


def _table_name() -> str:
    arguments = context.get_x_argument(as_dictionary=True)
    name = arguments.get("table") or config.attributes.get(TABLE_NAME_ATTRIBUTE)
    return str(name or _settings().table_name)


def _url() -> str:
    arguments = context.get_x_argument(as_dictionary=True)
    url = arguments.get("url") or config.get_main_option("sqlalchemy.url")
    return str(url or _settings().url.get_secret_value())


TABLE_NAME = _table_name()
config.attributes[TABLE_NAME_ATTRIBUTE] = TABLE_NAME
target_metadata = session_table(TABLE_NAME).metadata


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Only ormsession's own table and its index belong to this lineage."""
    table_name = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table_name == TABLE_NAME


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        version_table=version_table_for(TABLE_NAME),
        include_object=include_object,
        compare_type=True,
        **kwargs,
    )


def run_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    from ormsession.repositories.sql.urls import parse_sql_url

    engine = create_engine(parse_sql_url(_url()), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            _run_on(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
