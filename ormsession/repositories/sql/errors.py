"""Turning SQLAlchemy/driver errors into ormsession's, without leaking secrets."""

from __future__ import annotations

import re

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from ormsession.errors import SchemaError, StoreError, StoreUnavailableError
from ormsession.urls import scrub

__all__ = ["wrap_sql_error"]

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
    where = url.render_as_string(hide_password=True)
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    detail = scrub(f"{type(original).__name__}: {original}".strip(), url.password)
    detail = detail.splitlines()[0] if detail else type(original).__name__
    if _MISSING_TABLE.search(detail):
        return SchemaError(
            f"session table missing in {where} ({detail}); run: ormsession db upgrade"
        )
    if isinstance(exc, OperationalError | InterfaceError):
        return StoreUnavailableError(
            f"session store {where} unavailable during {operation}: {detail}"
        )
    return StoreError(f"session store {where} failed during {operation}: {detail}")
