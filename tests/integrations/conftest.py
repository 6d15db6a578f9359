"""Fixtures for the integration tests: stores to run each framework against.

``memory://`` for unit-level tests; a SQLite file and a private PostgreSQL database
(``ormsession_integ_<hex>``, created here, migrated with ``ormsession.schema.upgrade`` and
dropped afterwards) for the tests that must see real stores.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ormsession import schema
from tests.support.backends import backend_missing

DOCS = Path(__file__).resolve().parents[2] / "docs" / "integrations"
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


@pytest.fixture
def load_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Load an integration page's example (its first ``python`` block) as a module, in a
    temporary working directory (its ``sqlite:///sessions.sqlite3`` file lands there)."""
    monkeypatch.chdir(tmp_path)
    loaded: list[str] = []

    def load(page: str, replace: dict[str, str] | None = None) -> ModuleType:
        """``replace``: text of the example to change first (each must be there)."""
        text = (DOCS / page).read_text()
        match = re.search(r"```python\n(.*?)```", text, re.DOTALL)
        assert match, f"no python example in {page}"
        source = match.group(1)
        for old, new in (replace or {}).items():
            assert old in source, f"{old!r} is not in {page}'s example"
            source = source.replace(old, new)
        path = tmp_path / f"example_{page.removesuffix('.md')}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        loaded.append(path.stem)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)
