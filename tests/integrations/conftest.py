"""Fixtures for the integration tests: stores to run each framework against.

``memory://`` for unit-level tests; a SQLite file and a private PostgreSQL database
(``ormsession_integ_<hex>``, created here, migrated with ``ormsession.schema.upgrade`` and
dropped afterwards) for the tests that must see real stores.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ormsession import schema
from tests.support.backends import backend_missing

POSTGRES_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


def _admin_connection() -> Any:
    import psycopg2

    connection = psycopg2.connect(POSTGRES_DSN)
    connection.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    return connection


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The name of a private, migrated PostgreSQL database for this test session."""
    name = f"ormsession_integ_{uuid.uuid4().hex[:12]}"
    try:
        admin = _admin_connection()
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
    except Exception as exc:  # any failure means "no usable server"
        backend_missing(f"cannot create a PostgreSQL database on 127.0.0.1:5432: {exc}")
    try:
        schema.upgrade(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}")
        yield name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{postgres_database}"


@pytest.fixture
def postgres_async_url(postgres_database: str) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{postgres_database}"


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "sessions.sqlite3"


@pytest.fixture(params=["sqlite", "postgresql"])
def real_store_url(request: pytest.FixtureRequest, sqlite_path: Path) -> str:
    """A real store's synchronous URL (SQLite file, PostgreSQL)."""
    if request.param == "sqlite":
        return f"sqlite:///{sqlite_path}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["sqlite", "postgresql"])
def real_async_store_url(request: pytest.FixtureRequest, sqlite_path: Path) -> str:
    """A real store's asyncio URL (SQLite file via aiosqlite, PostgreSQL via asyncpg)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{sqlite_path}"
    return str(request.getfixturevalue("postgres_async_url"))


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def users_store_url(request: pytest.FixtureRequest, sqlite_path: Path) -> str:
    """A synchronous store URL for the tests of a user's sessions."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{sqlite_path}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def users_async_store_url(request: pytest.FixtureRequest, sqlite_path: Path) -> str:
    """:func:`users_store_url`'s asyncio twin (aiosqlite, asyncpg)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{sqlite_path}"
    return str(request.getfixturevalue("postgres_async_url"))
