"""The asyncio SQL twin: factories, engine reuse, cancellation, no event-loop blocking."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import warnings
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util import greenlet_spawn

import ormsession
from ormsession.errors import ConfigurationError, StoreUnavailableError
from tests.manager.test_lifecycle import cookie_id
from tests.support.blocking import BlockingCallError, no_blocking_calls
from tests.support.sql_fixtures import SQL_BACKENDS, UNOPENABLE_SQLITE_PATH, async_url, sql_url
from tests.support.stores import STORE_TARGETS

pytestmark = pytest.mark.parametrize("backend", SQL_BACKENDS)


@pytest.fixture
def url(request: pytest.FixtureRequest, backend: str) -> str:
    STORE_TARGETS[backend](request)  # migrated, table emptied
    return async_url(sql_url(request, backend))


def test_configure_async_round_trips(url: str) -> None:
    async def scenario() -> None:
        manager = await ormsession.configure_async(url=url, auto_migrate=False)
        async with manager:
            session = await manager.open(None)
            session["user"] = "ann"
            sid = cookie_id(await manager.save(session))
            assert (await manager.open(sid))["user"] == "ann"
            assert await manager.count() == 1

    asyncio.run(scenario())


def test_the_apps_async_engine_is_reused_and_left_working(url: str) -> None:
    async def scenario() -> None:
        engine = create_async_engine(url)
        disposed: list[Any] = []
        event.listen(engine.sync_engine, "engine_disposed", disposed.append)
        pool = engine.sync_engine.pool
        manager = await ormsession.configure_async(engine=engine)
        session = await manager.open(None)
        session["x"] = 1
        await manager.save(session)
        assert manager.repository.engine is engine
        await manager.close()
        assert disposed == [] and engine.sync_engine.pool is pool
        async with engine.connect() as connection:
            from sqlalchemy import text

            assert (await connection.execute(text("SELECT COUNT(*) FROM session"))).scalar() == 1
        await engine.dispose()

    asyncio.run(scenario())


def test_a_sync_url_is_refused_by_configure_async(
    request: pytest.FixtureRequest, backend: str
) -> None:
    sync_url = sql_url(request, backend).replace("sqlite://", "sqlite+pysqlite://")
    with pytest.raises(
        ConfigurationError, match=r"needs an asyncio one.*uses ormsession\.configure\(\)"
    ):
        asyncio.run(ormsession.configure_async(url=sync_url))


def test_cancelling_a_save_leaves_the_old_or_the_new_session(url: str) -> None:
    """Cancel saves at every point of their progress: the stored session is always either
    the old or the new data, never corrupt, and the manager keeps working."""
    old, new = {"n": 0, "pad": "a" * 1000}, {"n": 1, "pad": "b" * 1000}

    async def scenario() -> list[str]:
        outcomes = []
        async with await ormsession.configure_async(url=url, auto_migrate=False) as manager:
            for steps in range(0, 40, 2):
                session = await manager.open(None)
                session.update(old)
                sid = cookie_id(await manager.save(session))
                session = await manager.open(sid)
                session.update(new)
                task = asyncio.ensure_future(manager.save(session))
                for _ in range(steps):
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                    outcomes.append("finished")
                except asyncio.CancelledError:
                    outcomes.append("cancelled")
                stored = dict(await manager.open(sid))
                assert stored in (old, new), stored
                probe = await manager.open(None)
                probe["alive"] = True
                assert await manager.save(probe) is not None, "the manager must keep working"
        return outcomes

    outcomes = asyncio.run(scenario())
    assert "cancelled" in outcomes, "the test must actually interrupt some saves"


async def _create_then_change_a_cart(manager: Any) -> str:
    """A new session saved with ``cart: [1]``, then reopened and saved with ``[1, 2]``: a
    create, two reads and a compare-and-set. Its id."""
    session = await manager.open(None)
    session["cart"] = [1]
    sid = cookie_id(await manager.save(session))
    session = await manager.open(sid)
    session["cart"].append(2)
    await manager.save(session)
    return sid


def test_no_blocking_call_runs_on_the_event_loop(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        manager = await ormsession.configure_async(url=url, auto_migrate=False)
        async with manager:
            sid = await _create_then_change_a_cart(manager)
            session = await manager.open(sid)
            await manager.regenerate(session)
            await manager.save(session)
            await manager.count()
            await manager.gc()
            await manager.destroy(session)
            await manager.save(session)

    with no_blocking_calls(monkeypatch):
        asyncio.run(scenario())


def test_the_blocking_detector_detects_blocking(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    async def blocking() -> None:
        time.sleep(0.001)

    async def blocking_socket() -> None:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            pass

    with no_blocking_calls(monkeypatch):
        for coroutine in (blocking, blocking_socket):
            with pytest.raises(BlockingCallError):
                asyncio.run(coroutine())


def test_an_unreachable_database_fails_fast(backend: str) -> None:
    if backend == "sqlite":
        target = f"sqlite+aiosqlite:///{UNOPENABLE_SQLITE_PATH}"
    elif backend == "postgresql":
        target = "postgresql+asyncpg://app:hunter2secret@127.0.0.1:1/app"
    else:
        target = "mysql+asyncmy://app:hunter2secret@127.0.0.1:1/app"

    async def attempt() -> None:
        try:
            await ormsession.configure_async(url=target, store_timeout=2)
        finally:
            # Let the failed driver connection be collected while the loop still runs
            # (aiosqlite's worker thread reports back to the loop when it is closed).
            gc.collect()
            await asyncio.sleep(0.05)

    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as caught:
        asyncio.run(attempt())
    assert time.monotonic() - started < 5
    assert "hunter2secret" not in str(caught.value)


def test_a_connection_refused_at_first_use_is_unavailable_without_the_password(
    backend: str,
) -> None:
    """With no schema check, the first statement is the first connect: configure's start-up
    read, or (``on_store_error="fresh"``, which lets the app start without its store) the
    first operation. Whatever refuses it (no server, unknown role, unknown database) is
    StoreUnavailableError, as on the sync side, and never shows the password."""
    if backend == "sqlite":
        targets = [f"sqlite+aiosqlite:///{UNOPENABLE_SQLITE_PATH}"]
    elif backend == "postgresql":
        targets = [
            "postgresql+asyncpg://app:hunter2secret@127.0.0.1:1/app",
            "postgresql+asyncpg://nobody_here:hunter2secret@127.0.0.1:5432/test",
            "postgresql+asyncpg://postgres:hunter2secret@127.0.0.1:5432/no_such_database_here",
        ]
    else:
        targets = [
            "mysql+asyncmy://app:hunter2secret@127.0.0.1:1/app",
            "mysql+asyncmy://nobody_here:hunter2secret@127.0.0.1:3306/test",
        ]

    async def first_use(target: str, **options: Any) -> None:
        try:
            manager = await ormsession.configure_async(
                url=target, schema_check=False, auto_migrate=False, store_timeout=2, **options
            )
            try:
                await manager.count()
            finally:
                await manager.close()
        finally:
            gc.collect()  # as in test_an_unreachable_database_fails_fast
            await asyncio.sleep(0.05)

    for target in targets:
        for options, operation in (({}, "read"), ({"on_store_error": "fresh"}, "count")):
            with pytest.raises(StoreUnavailableError) as caught:
                asyncio.run(first_use(target, **options))
            assert "hunter2secret" not in str(caught.value) + repr(caught.value), target
            assert f"during {operation}" in str(caught.value)


def test_statements_take_the_pools_connection_without_a_connection_object(url: str) -> None:
    """Reads and writes check a connection out of the pool as it is: SQLAlchemy's
    AsyncConnection around it costs ~80 µs an operation on a local server.
    ``engine_connect`` fires for every such Connection made."""

    async def scenario() -> list[object]:
        async with await ormsession.configure_async(url=url, auto_migrate=False) as manager:
            engine = manager.repository.engine.sync_engine
            wrapped: list[object] = []
            event.listen(engine, "engine_connect", wrapped.append)
            sid = await _create_then_change_a_cart(manager)
            assert (await manager.open(sid))["cart"] == [1, 2]
            return wrapped

    assert asyncio.run(scenario()) == []


@pytest.mark.parametrize("engine_owner", ["ormsession", "app"])
def test_every_connection_goes_back_to_the_pool(
    url: str, engine_owner: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Whether an operation finishes, fails or is cancelled at any point, its connection
    returns to the pool (ormsession's own engine in place, an app's shielded), and none is
    left for the garbage collector to reclaim (which SQLAlchemy would log, and warn of)."""

    async def scenario() -> None:
        engine = create_async_engine(url) if engine_owner == "app" else None
        manager = await (
            ormsession.configure_async(engine=engine, auto_migrate=False)
            if engine is not None
            else ormsession.configure_async(url=url, auto_migrate=False)
        )
        pool = manager.repository.engine.sync_engine.pool
        session = await manager.open(None)
        session["n"] = 0
        sid = cookie_id(await manager.save(session))
        interrupted = 0
        for steps in range(12):
            session = await manager.open(sid)
            session["n"] = steps
            for work in (manager.save(session), manager.open(sid), manager.count()):
                task = asyncio.ensure_future(work)
                for _ in range(steps):
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    interrupted += 1
        for _ in range(20):  # an app engine's shielded returns may still be finishing
            if pool.checkedout() == 0:
                break
            await asyncio.sleep(0.01)
        assert pool.checkedout() == 0
        assert interrupted > 0, "the test must actually interrupt some operations"
        assert (await manager.open(sid)).get("n") is not None, "the pool must keep working"
        await manager.close()
        if engine is not None:
            await engine.dispose()
        # SQLAlchemy may terminate an invalidated aiosqlite connection with a stop() it does
        # not await: let the worker thread report back while the loop still runs.
        await asyncio.sleep(0.05)

    with warnings.catch_warnings(record=True) as warned, caplog.at_level("ERROR"):
        warnings.simplefilter("always")
        asyncio.run(scenario())
        gc.collect()
    reclaimed = [str(w.message) for w in warned] + caplog.messages
    assert not [m for m in reclaimed if "garbage collector" in m], reclaimed


def test_a_dropped_connection_is_replaced_transparently(url: str, backend: str) -> None:
    """The server ends the pooled connection between requests: the next read invalidates
    it, retries once on a fresh one, and leaves nothing checked out."""
    if backend == "sqlite":
        pytest.skip("SQLite has no server connections to drop")

    async def scenario() -> None:
        async with await ormsession.configure_async(url=url, auto_migrate=False) as manager:
            session = await manager.open(None)
            session["x"] = 1
            sid = cookie_id(await manager.save(session))
            engine = manager.repository.engine
            invalidated: list[object] = []
            event.listen(
                engine.sync_engine.pool, "invalidate", lambda *args: invalidated.append(args)
            )
            pooled = await engine.raw_connection()  # the one connection the pool holds
            try:
                raw = pooled.driver_connection
                if backend == "postgresql":
                    pid = await raw.fetchval("SELECT pg_backend_pid()")
                    kill = f"SELECT pg_terminate_backend({pid})"
                else:
                    async with raw.cursor() as cursor:
                        await cursor.execute("SELECT CONNECTION_ID()")
                        (pid,) = await cursor.fetchone()
                    kill = f"KILL {pid}"
            finally:
                await greenlet_spawn(pooled.close)
            admin = create_async_engine(url, poolclass=NullPool)
            async with admin.connect() as connection:
                await connection.exec_driver_sql(kill)
            await admin.dispose()
            await asyncio.sleep(0.2)
            assert (await manager.open(sid))["x"] == 1, "one dead connection must not fail a read"
            assert len(invalidated) == 1, "the read must have met the dead connection"
            assert engine.sync_engine.pool.checkedout() == 0

    asyncio.run(scenario())
