"""Store errors, counted by type and timed, on real stores: a SQLite table dropped under a
running app, and a private redis-server stopped under one (sync and async)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

import ormsession
from ormsession import SchemaError, StoreError, StoreUnavailableError
from tests.metrics.conftest import Events
from tests.support.redis_servers import RedisProcess

DURATION = "ormsession.store.operation.duration"
ERRORS = "ormsession.store.errors"


def drop_table(url: str) -> None:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE session")
    finally:
        engine.dispose()


def assert_one_error(events: Events, store: str, operation: str, error: str) -> None:
    attributes = {
        "ormsession.store": store,
        "ormsession.operation": operation,
        "error.type": error,
    }
    errors = events.named(ERRORS)
    assert [(e.value, dict(e.attributes)) for e in errors] == [(1, attributes)]
    failed = [e for e in events.named(DURATION) if "error.type" in e.attributes]
    assert [dict(e.attributes) for e in failed] == [attributes]
    assert 0 < failed[0].value < 5


def test_a_missing_sql_table(tmp_path: Path, events: Events) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.sqlite3'}"
    with ormsession.configure(url, metrics=events.append) as manager:
        session = manager.open(None)
        session["a"] = 1
        manager.save(session)
        drop_table(url)
        with pytest.raises(SchemaError):
            manager.open(session.id)
    assert_one_error(events, "sqlite", "read", "SchemaError")


def test_a_missing_sql_table_async(tmp_path: Path, events: Events) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.sqlite3'}"

    async def scenario() -> None:
        async with await ormsession.configure_async(
            url.replace("sqlite://", "sqlite+aiosqlite://"), metrics=events.append
        ) as manager:
            session = await manager.open(None)
            session["a"] = 1
            await manager.save(session)
            drop_table(url)
            with pytest.raises(StoreError) as raised:
                await manager.count()
            failures.append(raised.type.__qualname__)

    failures: list[str] = []
    asyncio.run(scenario())
    # (The async SQL store calls this a StoreError, the sync one's read a SchemaError.)
    assert_one_error(events, "sqlite", "count", failures[0])


@pytest.fixture
def redis_server(redis_binaries: None) -> Any:
    with RedisProcess() as server:
        yield server


def test_a_stopped_redis_server(redis_server: RedisProcess, events: Events) -> None:
    url = f"redis://{redis_server.host}:{redis_server.port}/0"
    with ormsession.configure(url, metrics=events.append, store_timeout=1) as manager:
        session = manager.open(None)
        session["a"] = 1
        manager.save(session)
        redis_server.stop()
        with pytest.raises(StoreUnavailableError):
            manager.open(session.id)
    assert_one_error(events, "redis", "read", "StoreUnavailableError")


def test_a_stopped_redis_server_async(redis_server: RedisProcess, events: Events) -> None:
    url = f"redis://{redis_server.host}:{redis_server.port}/0"

    async def scenario() -> None:
        async with await ormsession.configure_async(
            url, metrics=events.append, store_timeout=1
        ) as manager:
            session = await manager.open(None)
            session["a"] = 1
            await manager.save(session)
            redis_server.stop()
            session["b"] = 2
            with pytest.raises(StoreUnavailableError):
                await manager.save(session)

    asyncio.run(scenario())
    assert_one_error(events, "redis", "update", "StoreUnavailableError")


def test_a_store_error_served_as_a_fresh_session_is_still_counted(
    redis_server: RedisProcess, events: Events
) -> None:
    url = f"redis://{redis_server.host}:{redis_server.port}/0"
    options = {"metrics": events.append, "store_timeout": 1, "on_store_error": "fresh"}
    with ormsession.configure(url, **options) as manager:
        session = manager.open(None)
        session["a"] = 1
        manager.save(session)
        redis_server.stop()
        assert dict(manager.open(session.id)) == {}  # the outage is hidden from the app...
    assert_one_error(events, "redis", "read", "StoreUnavailableError")  # ...not from ops
