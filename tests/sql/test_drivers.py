"""The SQL drivers beyond each database's default pair: which mode each URL means, the
extra a missing driver's error names, an app's own engine on each, and aiomysql's bytes
(bound by ormsession: aiomysql 0.3.2 with PyMySQL 1.2 cannot bind them itself)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.ext.asyncio import create_async_engine

import ormsession
from ormsession.errors import ConfigurationError, MissingDriverError
from ormsession.expiry import now_us
from ormsession.repositories.sql.async_repository import AsyncSqlRepository
from ormsession.repositories.sql.urls import parse_sql_url
from ormsession.testing.contract import new_key, record
from tests.manager.test_lifecycle import cookie_id
from tests.support.drivers import DRIVER_MODES, DRIVERS
from tests.support.stores import target_for

#: Every byte value, and the ones MySQL's string escaping rewrites, several times over.
AWKWARD = bytes(range(256)) * 3 + b"\\'\"\x00\x1a\r\n%s%%" * 50


# -- which mode a URL means --------------------------------------------------------------------
def test_psycopg_3_serves_both_modes_under_one_name() -> None:
    url = "postgresql+psycopg://app@db/app"
    assert parse_sql_url(url).drivername == "postgresql+psycopg"
    assert parse_sql_url(url, want_async=True).drivername == "postgresql+psycopg"
    with pytest.raises(ConfigurationError, match="asyncio driver"):
        parse_sql_url("postgresql+psycopg_async://app@db/app")


@pytest.mark.parametrize("url", ["mysql+mysqldb://u@db/app", "mariadb+mariadbconnector://u@db/a"])
def test_a_sync_only_driver_is_refused_by_configure_async_with_the_asyncio_ones_named(
    url: str,
) -> None:
    with pytest.raises(ConfigurationError, match="synchronous driver") as caught:
        parse_sql_url(url, want_async=True)
    assert "postgresql+psycopg" in str(caught.value) and "mysql+aiomysql" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "want_async"),
    [
        ("postgresql+psycopg://app@db/app?bogus=1", False),
        ("postgresql+psycopg://app@db/app?bogus=1", True),
        ("mysql+aiomysql://app@db/app?bogus=1", True),
        ("mysql+aiomysql://app@db/app?charset=bogus", True),
    ],
)
def test_options_the_driver_would_refuse_are_refused_with_the_url(
    url: str, want_async: bool
) -> None:
    with pytest.raises(ConfigurationError, match=r"bogus|charset"):
        parse_sql_url(url, want_async=want_async)


def test_options_psycopg_3_takes_are_accepted() -> None:
    url = "postgresql+psycopg://app@db/app?sslmode=disable&application_name=x&connect_timeout=3"
    assert parse_sql_url(url, want_async=True).query["sslmode"] == "disable"


@pytest.mark.parametrize(
    ("url", "absent", "want_async", "chosen"),
    [
        ("mysql://u@db/app", ["pymysql"], False, "mysql+mysqldb"),
        ("mariadb://u@db/app", ["pymysql", "MySQLdb"], False, "mariadb+mariadbconnector"),
        ("mysql://u@db/app", ["asyncmy"], True, "mysql+aiomysql"),
        ("postgresql://u@db/app", ["psycopg2"], False, "postgresql+psycopg"),
    ],
)
def test_a_url_without_a_driver_takes_the_first_installed(
    monkeypatch: pytest.MonkeyPatch, url: str, absent: list[str], want_async: bool, chosen: str
) -> None:
    for module in absent:
        monkeypatch.setitem(sys.modules, module, None)
    assert parse_sql_url(url, want_async=want_async).drivername.startswith(chosen)


# -- a missing driver names its own extra ------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "module", "mode", "extra"),
    [
        ("postgresql+psycopg://app@127.0.0.1/app", "psycopg", "sync", "postgres-psycopg"),
        ("postgresql+psycopg://app@127.0.0.1/app", "psycopg", "async", "postgres-psycopg"),
        ("mysql+mysqldb://app@127.0.0.1/app", "MySQLdb", "sync", "mysqlclient"),
        ("mariadb+mariadbconnector://app@127.0.0.1/app", "mariadb", "sync", "mariadb"),
        ("mysql+mariadbconnector://app@127.0.0.1/app", "mariadb", "sync", "mariadb"),
        ("mysql+aiomysql://app@127.0.0.1/app", "aiomysql", "async", "async-aiomysql"),
        ("postgresql+psycopg2://app@127.0.0.1/app", "psycopg2", "sync", "postgres"),
    ],
)
def test_a_missing_driver_names_the_extra_that_installs_it(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, mode: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # "not installed": import fails
    hint = rf"pip install 'ormsession\[{extra}\]'"

    def configure() -> None:
        if mode == "sync":
            ormsession.configure(url=url)
        else:
            asyncio.run(ormsession.configure_async(url=url))

    with pytest.raises(MissingDriverError, match=hint):
        configure()


# -- an app's own engine on each driver ----------------------------------------------------------
def _sync_names() -> list[str]:
    return [name for name, modes in DRIVER_MODES.items() if "sync" in modes]


def _async_names() -> list[str]:
    return [name for name, modes in DRIVER_MODES.items() if "async" in modes]


@pytest.mark.parametrize("name", _sync_names())
def test_an_apps_engine_on_the_driver_is_reused_and_left_working(
    request: pytest.FixtureRequest, name: str
) -> None:
    engine = create_engine(target_for(request, name).url)
    disposed: list[Any] = []
    event.listen(engine, "engine_disposed", disposed.append)
    try:
        manager = ormsession.configure(engine=engine)
        session = manager.open(None)
        session["blob"] = AWKWARD.decode("latin-1")
        sid = cookie_id(manager.save(session))
        assert manager.open(sid)["blob"] == AWKWARD.decode("latin-1")
        assert manager.repository.engine is engine
        manager.close()
        assert disposed == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("name", _async_names())
def test_an_apps_async_engine_on_the_driver_is_reused_and_left_working(
    request: pytest.FixtureRequest, name: str
) -> None:
    url = target_for(request, name).async_url

    async def scenario() -> None:
        engine = create_async_engine(url)
        disposed: list[Any] = []
        event.listen(engine.sync_engine, "engine_disposed", disposed.append)
        try:
            manager = await ormsession.configure_async(engine=engine)
            session = await manager.open(None)
            session["blob"] = AWKWARD.decode("latin-1")
            sid = cookie_id(await manager.save(session))
            assert (await manager.open(sid))["blob"] == AWKWARD.decode("latin-1")
            assert manager.repository.engine is engine
            await manager.close()
            assert disposed == []
        finally:
            await engine.dispose()

    asyncio.run(scenario())


# -- aiomysql's bytes ------------------------------------------------------------------------
@pytest.mark.parametrize("sql_mode", ["", "NO_BACKSLASH_ESCAPES"], ids=["default", "no-backslash"])
def test_aiomysql_binds_every_byte_value_in_either_quoting_mode(
    request: pytest.FixtureRequest, sql_mode: str
) -> None:
    """The literals ormsession writes for aiomysql follow the server's quoting rules, which
    NO_BACKSLASH_ESCAPES changes (a backslash is then an ordinary character)."""
    url = target_for(request, "mysql+aiomysql").async_url
    connect_args = {"init_command": f"SET SESSION sql_mode = '{sql_mode}'"}

    async def scenario() -> None:
        engine = create_async_engine(url, connect_args=connect_args)
        repository = AsyncSqlRepository(engine)
        try:
            await repository.start()
            now, key = now_us(), new_key()
            assert await repository.create(key, record(now, AWKWARD), now)
            stored = await repository.read(key, now)
            assert stored is not None and stored.data == AWKWARD
            assert await repository.update(key, AWKWARD[::-1], now + 10, 1, now) == 2
            stored = await repository.read(key, now)
            assert stored is not None and stored.data == AWKWARD[::-1]
        finally:
            await repository.close()
            await engine.dispose()

    asyncio.run(scenario())


def test_every_driver_is_in_the_drivers_table_of_the_docs() -> None:
    from pathlib import Path

    table = (Path(__file__).parents[2] / "docs" / "stores" / "sql.md").read_text()
    for _, sync, aio in DRIVERS.values():
        for drivername in filter(None, (sync, aio)):
            assert f"`{drivername}://`" in table, drivername


# -- migrations through each synchronous driver ----------------------------------------------------
@pytest.mark.parametrize(
    ("fresh_database_url", "drivername"),
    [
        pytest.param(DRIVERS[name][0], DRIVERS[name][1], id=name)
        for name, modes in DRIVER_MODES.items()
        if "sync" in modes
    ],
    indirect=["fresh_database_url"],
)
def test_a_migration_runs_through_the_driver_up_and_down(
    fresh_database_url: str, drivername: str
) -> None:
    """`ormsession db upgrade` with the app's URL as it is (its driver, its own migration
    engine: connect bound, the run's statement limit armed on the driver's socket)."""
    from ormsession import schema
    from tests.support.drivers import with_driver

    url = with_driver(fresh_database_url, drivername)
    schema.upgrade(url)
    assert schema.current_revision(url) == schema.HEAD_REVISION
    engine = create_engine(url)
    try:
        schema.check_schema(engine)
    finally:
        engine.dispose()
    schema.downgrade(url, "base")
    assert schema.current_revision(url) is None
