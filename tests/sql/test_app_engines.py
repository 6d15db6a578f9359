"""The SQL store on an app's own engine with unusual but legitimate settings: every operation
still behaves, and the app's pooled connections come back as they were lent.

Each case runs sync and asyncio, through the driver directly (where ormsession has a path
for it) and through SQLAlchemy's execution layer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.ext.asyncio import create_async_engine

from ormsession.errors import SchemaError, StoreError
from ormsession.expiry import now_us
from ormsession.repositories.base import Owner, StoredSession
from ormsession.repositories.sql.async_repository import AsyncSqlRepository
from ormsession.repositories.sql.repository import SqlRepository
from ormsession.schema import upgrade
from tests.support.drivers import with_driver
from tests.support.sql_paths import MYSQL_CASES as ALL_MYSQL_CASES
from tests.support.sql_paths import PG_CASES, case_id, force_path

HOUR_US = 3600 * 1_000_000

#: asyncmy through SQLAlchemy's layer is left out where it cannot work: asyncmy itself
#: escapes bytes with backslashes, whatever the mode.
MYSQL_CASES = [case for case in ALL_MYSQL_CASES if case != ("async", "mysql+asyncmy", "sqlalchemy")]


@pytest.fixture(scope="module")
def pg_url(postgresql_url: str) -> str:
    upgrade(postgresql_url)
    return postgresql_url


@pytest.fixture(scope="module")
def mysql_store_url(mysql_url: str) -> str:
    upgrade(mysql_url)
    return mysql_url


def record(now: int, data: bytes = b"data") -> StoredSession:
    return StoredSession(data, 1, now, now + HOUR_US)


def pg_transaction_status(raw: Any) -> str:
    """The PostgreSQL transaction status of a driver connection, by name."""
    if hasattr(raw, "get_transaction_status"):  # psycopg2
        return {0: "IDLE", 1: "ACTIVE", 2: "INTRANS", 3: "INERROR"}[raw.get_transaction_status()]
    if hasattr(raw, "pgconn"):  # psycopg 3
        return str(raw.info.transaction_status.name)
    return "INTRANS" if raw.is_in_transaction() else "IDLE"  # asyncpg


# -- a failed statement on a pool that does not reset connections ---------------------------
@pytest.mark.parametrize("case", PG_CASES, ids=case_id)
def test_a_failed_statement_leaves_no_transaction_on_a_pool_that_does_not_reset(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, case: tuple[str, str, str]
) -> None:
    """``pool_reset_on_return=None`` is the app's to choose (its own code ends its
    transactions): a statement of ormsession's that failed (here the duplicate key of a
    create whose key is taken) must not leave its transaction open, aborted, on the pooled
    connection. It used to: the create then failed with ``InFailedSqlTransaction`` on its
    next statement, and so did the app's next use of that connection."""
    mode, drivername, path = case
    force_path(monkeypatch, path)
    url = with_driver(pg_url, drivername)
    now, key = now_us(), f"taken-{uuid.uuid4().hex}"
    options: dict[str, Any] = {"pool_reset_on_return": None, "pool_size": 1, "max_overflow": 0}
    if mode == "sync":
        engine = create_engine(url, **options)
        try:
            repository = SqlRepository(engine)
            assert repository.create(key, record(now), now)
            assert repository.create(key, record(now), now) is False
            assert repository.read(key, now) is not None
            raw = engine.raw_connection()
            try:
                assert pg_transaction_status(raw.dbapi_connection) == "IDLE"
            finally:
                raw.close()
        finally:
            engine.dispose()
        return

    async def run_async() -> None:
        engine = create_async_engine(url, **options)
        try:
            repository = AsyncSqlRepository(engine)
            await repository.start()
            assert await repository.create(key, record(now), now)
            assert await repository.create(key, record(now), now) is False
            assert await repository.read(key, now) is not None
            async with engine.connect() as connection:
                raw = (await connection.get_raw_connection()).driver_connection
                assert pg_transaction_status(raw) == "IDLE"
        finally:
            await engine.dispose()

    asyncio.run(run_async())


# -- MySQL's NO_BACKSLASH_ESCAPES -------------------------------------------------------------
def no_backslash_escapes(dbapi_connection: Any, _record: Any) -> None:
    """An app's connect listener: ANSI-style string literals (a backslash is a character)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
    cursor.close()


#: Session data that ends a literal escaped with backslashes under NO_BACKSLASH_ESCAPES
#: (``\'`` is then a backslash and the literal's end) and comments out the rest of the
#: statement: its WHERE clause, so the save rewrote every row of the table.
ESCAPING_DATA = b"x', session_version = 7 # \\ \\0 \x00 \\"


@pytest.mark.parametrize("case", MYSQL_CASES, ids=case_id)
def test_session_data_stays_data_on_a_connection_without_backslash_escapes(
    mysql_store_url: str, monkeypatch: pytest.MonkeyPatch, case: tuple[str, str, str]
) -> None:
    """Saved on an app's engine whose connections run in ``NO_BACKSLASH_ESCAPES``, data
    with quotes and backslashes comes back as it went in, and changes no other session.
    asyncmy used to escape it with backslashes all the same: a syntax error at best, and
    with data like the above a save that rewrote every session in the table."""
    mode, drivername, path = case
    force_path(monkeypatch, path)
    url = with_driver(mysql_store_url, drivername)
    now, mine, other = now_us(), f"mine-{uuid.uuid4().hex}", f"other-{uuid.uuid4().hex}"
    if mode == "sync":
        engine = create_engine(url)
        event.listen(engine, "connect", no_backslash_escapes)
        try:
            repository = SqlRepository(engine)
            assert repository.create(mine, record(now), now)
            assert repository.create(other, record(now), now)
            assert repository.update(mine, ESCAPING_DATA, now + HOUR_US, 1, now) == 2
            stored, untouched = repository.read(mine, now), repository.read(other, now)
        finally:
            engine.dispose()
    else:

        async def run_async() -> tuple[Any, Any]:
            engine = create_async_engine(url)
            event.listen(engine.sync_engine, "connect", no_backslash_escapes)
            try:
                repository = AsyncSqlRepository(engine)
                await repository.start()
                assert await repository.create(mine, record(now), now)
                assert await repository.create(other, record(now), now)
                saved = await repository.update(mine, ESCAPING_DATA, now + HOUR_US, 1, now)
                assert saved == 2
                return await repository.read(mine, now), await repository.read(other, now)
            finally:
                await engine.dispose()

        stored, untouched = asyncio.run(run_async())
    assert stored is not None
    assert (stored.data, stored.version) == (ESCAPING_DATA, 2)
    assert untouched is not None
    assert (untouched.data, untouched.version) == (b"data", 1)


# -- an engine that streams its results ------------------------------------------------------
@pytest.mark.parametrize("streaming", [{"stream_results": True}, {"yield_per": 10}], ids=str)
@pytest.mark.parametrize("case", PG_CASES, ids=case_id)
def test_an_engine_that_streams_results_still_serves_sessions(
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[str, str, str],
    streaming: dict[str, Any],
) -> None:
    """An app's engine may ask for server-side cursors for all its queries
    (``engine.execution_options(stream_results=True)`` or ``yield_per``). ormsession's own
    statements used to inherit them: PostgreSQL opens such a cursor only inside a
    transaction (the gc lock, in autocommit, failed), psycopg declared one for an INSERT
    (every create failed), and SQLAlchemy's asyncio layer refuses one in ``execute()``."""
    mode, drivername, path = case
    force_path(monkeypatch, path)
    url = with_driver(pg_url, drivername)
    now, key = now_us(), f"streamed-{uuid.uuid4().hex}"
    if mode == "sync":
        engine = create_engine(url)
        try:
            repository = SqlRepository(engine.execution_options(**streaming))
            assert repository.create(key, record(now), now)
            assert repository.update(key, b"changed", now + HOUR_US, 1, now) == 2
            stored = repository.read(key, now)
            with repository.gc_lock() as held:
                assert held
                assert repository.delete_expired(now, 10) >= 0
        finally:
            engine.dispose()
    else:

        async def run_async() -> Any:
            engine = create_async_engine(url)
            try:
                repository = AsyncSqlRepository(engine.execution_options(**streaming))
                await repository.start()
                assert await repository.create(key, record(now), now)
                assert await repository.update(key, b"changed", now + HOUR_US, 1, now) == 2
                async with repository.gc_lock() as held:
                    assert held
                    assert await repository.delete_expired(now, 10) >= 0
                return await repository.read(key, now)
            finally:
                await engine.dispose()

        stored = asyncio.run(run_async())
    assert stored is not None
    assert (stored.data, stored.version) == (b"changed", 2)


# -- a connection character set that cannot carry the text -------------------------------
LATIN1_CASES = [
    ("sync", "mysql+pymysql", "driver"),
    ("sync", "mysql+pymysql", "sqlalchemy"),
    ("sync", "mysql+mysqldb", "driver"),
    ("async", "mysql+asyncmy", "driver"),
    ("async", "mysql+asyncmy", "sqlalchemy"),
    ("async", "mysql+aiomysql", "driver"),
]


@pytest.mark.parametrize("case", LATIN1_CASES, ids=case_id)
def test_text_the_connection_charset_cannot_carry_is_a_store_error(
    mysql_store_url: str, monkeypatch: pytest.MonkeyPatch, case: tuple[str, str, str]
) -> None:
    """An app's engine on ``charset=latin1`` and a login whose user agent holds a character
    latin1 has not: the driver fails to encode the statement, which used to reach the app
    as a bare ``UnicodeEncodeError`` (no ormsession error, no "store failed" handling)."""
    mode, drivername, path = case
    force_path(monkeypatch, path)
    url = with_driver(mysql_store_url, drivername) + "?charset=latin1"
    now, key, new_key = now_us(), f"old-{uuid.uuid4().hex}", f"new-{uuid.uuid4().hex}"
    owner = Owner("user-1", "handle-1", "Mozilla/5.0 \u2603", "127.0.0.1")
    if mode == "sync":
        engine = create_engine(url, pool_size=1, max_overflow=0)
        try:
            repository = SqlRepository(engine)
            assert repository.create(key, record(now), now)
            with pytest.raises(StoreError, match="character set") as raised:
                repository.rename(key, new_key, now + HOUR_US, now, owner)
            assert repository.read(key, now) is not None  # the connection still serves
        finally:
            engine.dispose()
    else:

        async def run_async() -> Any:
            engine = create_async_engine(url, pool_size=1, max_overflow=0)
            try:
                repository = AsyncSqlRepository(engine)
                await repository.start()
                assert await repository.create(key, record(now), now)
                with pytest.raises(StoreError, match="character set") as raised:
                    await repository.rename(key, new_key, now + HOUR_US, now, owner)
                assert await repository.read(key, now) is not None
                return raised
            finally:
                await engine.dispose()

        raised = asyncio.run(run_async())
    assert isinstance(raised.value.__cause__, UnicodeError)


# -- another table of the same name first on the search path --------------------------
@pytest.fixture
def other_session_table(pg_url: str) -> Iterator[str]:
    """A schema of the app's own holding a different table named ``session``."""
    schema = f"app_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
            connection.execute(text(f"CREATE TABLE {schema}.session (id int PRIMARY KEY)"))
        yield schema
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.mark.parametrize("case", PG_CASES, ids=case_id)
def test_another_session_table_first_on_the_search_path_fails_at_start_up(
    pg_url: str,
    other_session_table: str,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[str, str, str],
) -> None:
    """An app's engine whose connections put the app's own schema, holding a table of its
    own named ``session``, ahead of ormsession's on the search path. The schema check
    found ormsession's version table and *a* ``session`` table, and passed; then every
    operation failed, telling to run ``db upgrade``. It is a SchemaError at start-up now."""
    mode, drivername, path = case
    force_path(monkeypatch, path)
    url = with_driver(pg_url, drivername)
    search_path = f"{other_session_table},public"
    if mode == "sync":
        engine = create_engine(url, connect_args={"options": f"-c search_path={search_path}"})
        try:
            with pytest.raises(SchemaError, match="not ormsession's session table"):
                SqlRepository(engine)
        finally:
            engine.dispose()
        return

    async def run_async() -> None:
        if drivername == "postgresql+asyncpg":
            connect_args: dict[str, Any] = {"server_settings": {"search_path": search_path}}
        else:
            connect_args = {"options": f"-c search_path={search_path}"}
        engine = create_async_engine(url, connect_args=connect_args)
        try:
            with pytest.raises(SchemaError, match="not ormsession's session table"):
                await AsyncSqlRepository(engine).start()
        finally:
            await engine.dispose()

    asyncio.run(run_async())


# -- an app that listens to its engine's executions --------------------------------------
SEEN_CASES = [
    ("sync", "postgresql+psycopg2"),
    ("sync", "postgresql+psycopg"),
    ("async", "postgresql+psycopg"),
    ("async", "postgresql+asyncpg"),
]


@pytest.mark.parametrize("case", SEEN_CASES, ids="-".join)
def test_an_apps_execution_listeners_see_the_session_statements(
    pg_url: str, case: tuple[str, str]
) -> None:
    """An app's ``before_cursor_execute`` listener (tracing, a statement log, a query
    counter) saw ormsession's schema check but none of its session statements: for the
    drivers it knows, ormsession ran them straight on DBAPI cursors, past SQLAlchemy's
    execution layer that fires the event."""
    mode, drivername = case
    url = with_driver(pg_url, drivername)
    now, key = now_us(), f"seen-{uuid.uuid4().hex}"
    seen: list[str] = []

    def listener(*args: Any) -> None:
        seen.append(args[2])  # (connection, cursor, statement, ...)

    if mode == "sync":
        engine = create_engine(url)
        event.listen(engine, "before_cursor_execute", listener)
        try:
            repository = SqlRepository(engine)
            assert repository.create(key, record(now), now)
            assert repository.read(key, now) is not None
        finally:
            engine.dispose()
    else:

        async def run_async() -> None:
            engine = create_async_engine(url)
            event.listen(engine.sync_engine, "before_cursor_execute", listener)
            try:
                repository = AsyncSqlRepository(engine)
                await repository.start()
                assert await repository.create(key, record(now), now)
                assert await repository.read(key, now) is not None
            finally:
                await engine.dispose()

        asyncio.run(run_async())
    assert any(statement.startswith("INSERT INTO session") for statement in seen)
    assert any("session_packed" in statement for statement in seen)  # the read


@pytest.mark.parametrize("drivername", ["mysql+asyncmy", "mysql+aiomysql"])
def test_an_apps_listeners_never_route_asyncmy_or_aiomysql_through_their_own_binding(
    mysql_store_url: str, drivername: str
) -> None:
    """Through SQLAlchemy's layer these drivers bind the parameters themselves: aiomysql
    breaks every bytes value with PyMySQL 1.2, asyncmy escapes them with backslashes on a
    NO_BACKSLASH_ESCAPES connection (a quote in session data ends the literal). An app's
    execution listener must not send session statements there."""
    url = with_driver(mysql_store_url, drivername)
    now, mine, other = now_us(), f"mine-{uuid.uuid4().hex}", f"other-{uuid.uuid4().hex}"

    async def run_async() -> tuple[Any, Any]:
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", no_backslash_escapes)
        event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: None)
        try:
            repository = AsyncSqlRepository(engine)
            await repository.start()
            assert await repository.create(mine, record(now), now)
            assert await repository.create(other, record(now), now)
            assert await repository.update(mine, ESCAPING_DATA, now + HOUR_US, 1, now) == 2
            return await repository.read(mine, now), await repository.read(other, now)
        finally:
            await engine.dispose()

    stored, untouched = asyncio.run(run_async())
    assert stored is not None and (stored.data, stored.version) == (ESCAPING_DATA, 2)
    assert untouched is not None and untouched.version == 1


# -- the statement's parameters in the error chain -----------------------------------------
SECRET = b"csrf-token-0123456789"
SECRET_IP = "203.0.113.77"


def error_chain(exc: BaseException | None) -> str:
    """Every message of ``exc`` and the exceptions it was raised from, as a traceback
    prints them."""
    messages = []
    while exc is not None:
        messages.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(messages)


@pytest.mark.parametrize(
    "case",
    [("sync", "mysql+pymysql"), ("async", "mysql+asyncmy")],
    ids="-".join,
)
def test_a_failed_statement_keeps_session_data_out_of_the_error_chain(
    mysql_store_url: str, monkeypatch: pytest.MonkeyPatch, case: tuple[str, str]
) -> None:
    """Through SQLAlchemy's execution layer on an app's engine (made without
    ``hide_parameters=True``), the driver error a StoreError is raised from listed the
    statement's parameters: session data, the owner's IP address and user agent, printed
    with every traceback the app logs."""
    mode, drivername = case
    force_path(monkeypatch, "sqlalchemy")
    url = with_driver(mysql_store_url, drivername)
    now, key = now_us(), "k" * 100  # longer than the key column: the server refuses it
    stored = StoredSession(SECRET, 1, now, now + HOUR_US, Owner("u", "h", "agent", SECRET_IP))
    if mode == "sync":
        engine = create_engine(url)
        try:
            with pytest.raises(StoreError) as raised:
                SqlRepository(engine).create(key, stored, now)
        finally:
            engine.dispose()
    else:

        async def run_async() -> Any:
            engine = create_async_engine(url)
            try:
                repository = AsyncSqlRepository(engine)
                await repository.start()
                with pytest.raises(StoreError) as raised:
                    await repository.create(key, stored, now)
                return raised
            finally:
                await engine.dispose()

        raised = asyncio.run(run_async())
    chain = error_chain(raised.value)
    assert "Data too long" in chain  # the driver's error is there, its parameters are not
    assert SECRET.decode() not in chain
    assert SECRET.hex() not in chain
    assert SECRET_IP not in chain


# -- a migration on an app's engine ------------------------------------------------------------
@pytest.mark.parametrize("fresh_database_url", ["mysql"], indirect=True)
def test_a_migration_gives_the_apps_connection_back_with_its_own_lock_wait_timeout(
    fresh_database_url: str,
) -> None:
    """``upgrade(app_engine)`` bounds its table-lock waits with ``lock_wait_timeout`` and
    then put back the server's default (a year), not the value the app's connection had
    (here 7 s, set by the app's connect listener): the app's next statements on that
    pooled connection waited for locks far longer than it had asked."""
    engine = create_engine(fresh_database_url, pool_size=1, max_overflow=0)

    def app_setting(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION lock_wait_timeout = 7")
        cursor.close()

    event.listen(engine, "connect", app_setting)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            setting = connection.execute(text("SELECT @@SESSION.lock_wait_timeout")).scalar()
        assert setting == 7
    finally:
        engine.dispose()
