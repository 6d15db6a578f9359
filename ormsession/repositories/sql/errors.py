"""Turning SQLAlchemy/driver errors into ormsession's, without leaking secrets."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.exc import (
    DBAPIError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)

from ormsession.errors import SchemaError, StoreError, StoreUnavailableError
from ormsession.repositories.sql.urls import display_sql_url
from ormsession.urls import scrub

__all__ = ["as_sqlalchemy_error", "wrap_sql_error"]

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
    where = display_sql_url(url)
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


def as_sqlalchemy_error(exc: Exception, dialect: Dialect) -> StatementError:
    """``exc``, a driver error raised outside SQLAlchemy's execution layer (a DBAPI cursor,
    or a connect inside ``raw_connection()``), wrapped as that layer would have wrapped it:
    the SQLAlchemy class of its kind (``OperationalError``, ``IntegrityError``...),
    parameters hidden (they hold session data)."""
    dbapi_error: Any = dialect.loaded_dbapi.Error
    return DBAPIError.instance(None, None, exc, dbapi_error, hide_parameters=True, dialect=dialect)
