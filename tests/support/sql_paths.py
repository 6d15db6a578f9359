"""Every way a SQL statement of ormsession's reaches a server: each driver, sync or asyncio,
through ormsession's direct driver path or through SQLAlchemy's execution layer, as
``(mode, SQLAlchemy drivername, path)`` cases for tests that must hold on all of them."""

from __future__ import annotations

import pytest

from ormsession.repositories.sql import async_repository as async_sql
from ormsession.repositories.sql import repository as sync_sql

Case = tuple[str, str, str]

PG_CASES: list[Case] = [
    ("sync", "postgresql+psycopg2", "driver"),
    ("sync", "postgresql+psycopg2", "sqlalchemy"),
    ("sync", "postgresql+psycopg", "driver"),
    ("async", "postgresql+psycopg", "driver"),
    ("async", "postgresql+asyncpg", "driver"),
    ("async", "postgresql+asyncpg", "sqlalchemy"),
]
MYSQL_CASES: list[Case] = [
    ("sync", "mysql+pymysql", "driver"),
    ("sync", "mysql+pymysql", "sqlalchemy"),
    ("sync", "mysql+mysqldb", "driver"),
    ("sync", "mariadb+mariadbconnector", "driver"),
    ("async", "mysql+asyncmy", "driver"),
    ("async", "mysql+asyncmy", "sqlalchemy"),
    ("async", "mysql+aiomysql", "driver"),
]


def case_id(case: Case) -> str:
    return "-".join(case)


def force_path(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """Send the statements through SQLAlchemy's layer (``path="sqlalchemy"``)."""
    if path == "sqlalchemy":
        monkeypatch.setattr(sync_sql, "DBAPI_DRIVERS", frozenset())
        monkeypatch.setattr(async_sql, "driver_for", lambda _name: None)
