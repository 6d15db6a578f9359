"""Fixtures for the SQL servers on this machine: a private database per test session.

Each test session creates its own database on PostgreSQL and MariaDB (``ormsession_t_<hex>``)
and drops it at the end, so tests never touch data they did not create.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.support.backends import backend_missing

POSTGRES_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
MARIADB_ADMIN_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
SQL_BACKENDS = ("sqlite", "postgresql", "mysql")
#: A SQLite "file" that cannot be opened, the embedded database's outage: a directory (a
#: file in a directory that does not exist is a ConfigurationError instead).
UNOPENABLE_SQLITE_PATH = tempfile.gettempdir()


def _admin_engine(url: str) -> Engine:
    return create_engine(
        url, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 3}
    )


def _private_database(admin_url: str, name: str) -> Iterator[str]:
    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:
        engine.dispose()
        backend_missing(f"cannot create a database on {make_url(admin_url).host}: {exc}")
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        engine.dispose()


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """A private, empty PostgreSQL database for this test session."""
    yield from _private_database(POSTGRES_ADMIN_URL, f"ormsession_t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A private, empty MariaDB database for this test session."""
    yield from _private_database(MARIADB_ADMIN_URL, f"ormsession_t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file of this test session."""
    path: Path = tmp_path_factory.mktemp("sqlite") / "sessions.sqlite3"
    return f"sqlite:///{path}"


@pytest.fixture
def fresh_database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """An extra private database for tests that migrate up and down (parametrize with
    ``indirect`` backend names: sqlite, postgresql, mysql)."""
    backend = request.param
    name = f"ormsession_m_{uuid.uuid4().hex[:12]}"
    if backend == "sqlite":
        path = request.getfixturevalue("tmp_path") / "fresh.sqlite3"
        yield f"sqlite:///{path}"
    elif backend == "postgresql":
        yield from _private_database(POSTGRES_ADMIN_URL, name)
    else:
        yield from _private_database(MARIADB_ADMIN_URL, name)


def sql_url(request: pytest.FixtureRequest, backend: str) -> str:
    """The session database URL of ``backend`` (sqlite, postgresql or mysql)."""
    return str(request.getfixturevalue(f"{backend}_url"))


def async_url(url: str) -> str:
    """The same database through its asyncio driver."""
    parsed = make_url(url)
    driver = {
        "postgresql": "postgresql+asyncpg",
        "mysql": "mysql+asyncmy",
        "sqlite": "sqlite+aiosqlite",
    }[parsed.get_backend_name()]
    return parsed.set(drivername=driver).render_as_string(hide_password=False)
