"""SQL-specific behaviour on SQLite, PostgreSQL and MariaDB: what the contract cannot see."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session as OrmSession

import ormsession
from ormsession.errors import ConfigurationError, SchemaError, StoreUnavailableError
from ormsession.ids import storage_key
from ormsession.schema import upgrade
from tests.manager.test_lifecycle import cookie_id
from tests.support.sql_fixtures import SQL_BACKENDS, UNOPENABLE_SQLITE_PATH, sql_url
from tests.support.statement_log import traced_engine
from tests.support.stores import STORE_TARGETS

pytestmark = pytest.mark.parametrize("backend", SQL_BACKENDS)


@pytest.fixture
def url(request: pytest.FixtureRequest, backend: str) -> str:
    STORE_TARGETS[backend](request)  # migrated, and the table emptied for this test
    return sql_url(request, backend)


@pytest.fixture
def app_engine(url: str) -> Iterator[Engine]:
    """An engine the way an application builds its own (default options)."""
    engine = create_engine(url)
    yield engine
    engine.dispose()


def rows(url: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text("SELECT * FROM session"))]
    finally:
        engine.dispose()


def test_configure_by_url_round_trips_and_stores_no_raw_id(url: str, backend: str) -> None:
    with ormsession.configure(url=url, auto_migrate=False) as manager:
        session = manager.open(None)
        session["user_id"] = 42
        sid = cookie_id(manager.save(session))
        assert manager.open(sid)["user_id"] == 42
    stored = rows(url)
    assert len(stored) == 1
    flattened = repr(stored)
    assert sid not in flattened, "the raw session id must not be stored anywhere"
    assert stored[0][0] == storage_key(sid)


def test_a_read_only_request_issues_no_insert_or_update(url: str, backend: str) -> None:
    engine, statements = traced_engine(url)
    with ormsession.configure(engine=engine) as manager:
        session = manager.open(None)
        session["cart"] = ["apple"]
        sid = cookie_id(manager.save(session))
        assert "INSERT" in statements, "the log must see the store's statements"
        statements.clear()
        session = manager.open(sid)
        assert session["cart"] == ["apple"]
        assert manager.save(session) is None
        assert [s for s in statements if s not in ("BEGIN", "COMMIT", "ROLLBACK")] == ["SELECT"]
    engine.dispose()


def test_the_apps_engine_is_reused_and_left_working(app_engine: Engine, backend: str) -> None:
    disposed: list[Any] = []
    event.listen(app_engine, "engine_disposed", disposed.append)
    pool = app_engine.pool
    manager = ormsession.configure(engine=app_engine)
    session = manager.open(None)
    session["x"] = 1
    sid = cookie_id(manager.save(session))
    assert manager.repository.engine is app_engine
    manager.close()
    assert disposed == [] and app_engine.pool is pool, "the app's engine must not be disposed"
    with app_engine.connect() as connection:
        key = connection.execute(text("SELECT session_key FROM session")).scalar_one()
    assert key == storage_key(sid)


def test_saving_never_commits_the_apps_transaction(app_engine: Engine, backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite allows one writer: an open app transaction blocks every save")
    with app_engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS app_orders"))
        connection.execute(text("CREATE TABLE app_orders (id INTEGER PRIMARY KEY)"))
    try:
        manager = ormsession.configure(engine=app_engine)
        with OrmSession(app_engine) as orm:
            orm.execute(text("INSERT INTO app_orders (id) VALUES (1)"))  # pending, uncommitted
            session = manager.open(None)
            session["order"] = 1
            manager.save(session)
            orm.rollback()
        with app_engine.connect() as connection:
            assert connection.execute(text("SELECT COUNT(*) FROM app_orders")).scalar() == 0
            assert connection.execute(text("SELECT COUNT(*) FROM session")).scalar() == 1
        manager.close()
    finally:
        with app_engine.begin() as connection:
            connection.execute(text("DROP TABLE app_orders"))


def test_a_dropped_connection_is_replaced_transparently(url: str, backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has no server connections to drop")
    with ormsession.configure(url=url, auto_migrate=False) as manager:
        session = manager.open(None)
        session["x"] = 1
        sid = cookie_id(manager.save(session))
        engine = manager.repository.engine
        with engine.connect() as connection:  # the pooled connection the manager reuses
            if backend == "postgresql":
                pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
                kill = f"SELECT pg_terminate_backend({pid})"
            else:
                pid = connection.execute(text("SELECT CONNECTION_ID()")).scalar()
                kill = f"KILL {pid}"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(kill))
        admin.dispose()
        time.sleep(0.2)
        assert manager.open(sid)["x"] == 1, "one dead pooled connection must not fail a request"


def test_a_missing_table_is_a_schema_error_naming_the_fix(
    request: pytest.FixtureRequest, backend: str
) -> None:
    url = sql_url(request, backend)
    with pytest.raises(SchemaError, match="ormsession db upgrade"):
        ormsession.configure(url=url, table_name="never_migrated", auto_migrate=False)


def test_an_unreachable_database_is_a_typed_error_within_the_timeout(backend: str) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{UNOPENABLE_SQLITE_PATH}"
    elif backend == "postgresql":
        url = "postgresql+psycopg2://app:hunter2secret@127.0.0.1:1/app"
    else:
        url = "mysql+pymysql://app:hunter2secret@127.0.0.1:1/app"
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as caught:
        ormsession.configure(url=url, store_timeout=2)
    assert time.monotonic() - started < 5
    assert "hunter2secret" not in str(caught.value)
    assert "hunter2secret" not in repr(caught.value)


def test_wrong_credentials_never_show_the_password(backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has no credentials")
    base = "postgresql+psycopg2://postgres" if backend == "postgresql" else "mysql+pymysql://root"
    target = make_url(f"{base}@127.0.0.1/test").set(username="nobody_here", password="s3cr3t-pw")
    with pytest.raises(StoreUnavailableError) as caught:
        ormsession.configure(url=target.render_as_string(hide_password=False))
    assert "s3cr3t-pw" not in str(caught.value)
    assert "***" in str(caught.value)


def test_async_urls_are_refused_by_the_sync_factory_and_back(backend: str) -> None:
    async_scheme = {
        "sqlite": "sqlite+aiosqlite",
        "postgresql": "postgresql+asyncpg",
        "mysql": "mysql+asyncmy",
    }[backend]
    with pytest.raises(ConfigurationError, match="configure_async"):
        ormsession.configure(url=f"{async_scheme}://u@127.0.0.1/x")


def test_a_custom_table_name(request: pytest.FixtureRequest, backend: str) -> None:
    url = sql_url(request, backend)
    upgrade(url, table_name="app_sessions")
    try:
        with ormsession.configure(url=url, table_name="app_sessions") as manager:
            session = manager.open(None)
            session["x"] = 1
            sid = cookie_id(manager.save(session))
            assert manager.open(sid)["x"] == 1
        engine = create_engine(url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT COUNT(*) FROM app_sessions")).scalar() == 1
        engine.dispose()
    finally:
        from ormsession.schema import downgrade

        downgrade(url, "base", table_name="app_sessions")
        upgrade(url)  # back to the default table for the rest of the session
