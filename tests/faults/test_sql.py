"""SQL-only faults: the project's own connections killed on the server, pool starvation
under a stalled server and under load on a healthy one, a role the server refuses, and a
MariaDB write over ``max_allowed_packet``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from ormsession.errors import OrmsessionError, SessionTooLargeError, StoreUnavailableError
from tests.support.faults import (
    SLACK,
    TIMEOUT,
    assert_intact,
    configure_in,
    fails_fast,
    lifted_after,
    opened,
    opened_on_engine,
    record,
    save_new,
    save_sessions,
    succeeds,
)
from tests.support.sql_fixtures import MARIADB_ADMIN_URL, POSTGRES_ADMIN_URL
from tests.support.stores import target_for

from .test_network import Proxied, label

SQL_STORES = [
    pytest.param(store, mode, id=f"{store}-{mode}")
    for store in ("postgresql", "mysql")
    for mode in ("sync", "async")
]
WORKERS = 64


def kill_own_connections(store: str, database: str) -> int:
    """End every server connection to ``database`` (this test session's own) from the
    server side: pg_terminate_backend, or MariaDB's KILL. Returns how many."""
    admin = create_engine(
        POSTGRES_ADMIN_URL if store == "postgresql" else MARIADB_ADMIN_URL,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as connection:
            if store == "postgresql":
                query = text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                )
                return int(connection.execute(query, {"db": database}).scalar_one())
            ids = connection.execute(
                text(
                    "SELECT id FROM information_schema.processlist "
                    "WHERE db = :db AND id <> connection_id()"
                ),
                {"db": database},
            ).scalars()
            killed = 0
            for thread_id in list(ids):
                connection.execute(text(f"KILL {int(thread_id)}"))
                killed += 1
            return killed
    finally:
        admin.dispose()


def concurrently(mode: str, manager: Any, call: Callable[[Any], Any], workers: int) -> list[Any]:
    """``call(manager)`` from ``workers`` threads (sync) or tasks (async) at once; each
    result, or the exception it raised."""
    if mode == "sync":

        def one(_: int) -> Any:
            try:
                return call(manager)
            except Exception as exc:
                return exc

        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, range(workers)))
    inner = manager.inner

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(*(call(inner) for _ in range(workers)), return_exceptions=True)

    return list(manager._runner.run(all_at_once()))


async def _acount(manager: Any) -> int:
    return int(await manager.count())


def counter(mode: str) -> Callable[[Any], Any]:
    return (lambda manager: manager.count()) if mode == "sync" else _acount


@pytest.mark.parametrize(("store", "mode"), SQL_STORES)
def test_the_server_kills_our_connections(
    request: pytest.FixtureRequest, store: str, mode: str
) -> None:
    """pg_terminate_backend / KILL on every pooled connection: each operation after it
    finds its connection dead, retries on a new one (the pool drops every connection as
    old as the dead one), and succeeds; asyncpg's InternalClientError never escapes."""
    target = target_for(request, store)
    url = target.url if mode == "sync" else target.async_url
    database = make_url(url).database
    assert database is not None
    with opened(url, mode, **target.options) as manager:
        acknowledged = save_sessions(manager, 3, "before")
        concurrently(mode, manager, counter(mode), 8)  # several pooled connections
        assert kill_own_connections(store, database) >= 1
        time.sleep(0.1)  # let the terminations land
        started = time.monotonic()
        outcomes = concurrently(mode, manager, counter(mode), 8)
        elapsed = time.monotonic() - started
        assert [o for o in outcomes if isinstance(o, BaseException)] == []
        succeeds(manager.count)
        acknowledged |= save_sessions(manager, 1, "after")
        assert_intact(manager, acknowledged)
    record(
        label(store),
        mode,
        "our connections killed by the server, pg_terminate_backend or KILL "
        "(the time: 8 operations at once)",
        "nothing (one retry on a new connection)",
        elapsed,
    )


@pytest.mark.parametrize(("store", "mode"), SQL_STORES)
def test_64_workers_on_a_stalled_server(proxied: Proxied, store: str, mode: str) -> None:
    """With the default pool (5 + 10 overflow) and 64 workers, those holding a connection
    wait for the stalled server and the others for the pool: all of it within the timeout
    (SQLAlchemy's own pool would make 49 of them wait its 30 s)."""
    url, options, proxy = proxied(store, mode)
    with opened(url, mode, **options) as manager:
        concurrently(mode, manager, counter(mode), 16)  # a warm pool
        with lifted_after(proxy.resume):
            proxy.stall()
            started = time.monotonic()
            outcomes = concurrently(mode, manager, counter(mode), WORKERS)
            elapsed = time.monotonic() - started
        others = [o for o in outcomes if not isinstance(o, StoreUnavailableError)]
        assert others == [], f"{len(others)} of {len(outcomes)} outcomes: {others!r}"
        assert elapsed <= TIMEOUT + SLACK
        _, recovery = succeeds(manager.count)
    record(
        label(store),
        mode,
        f"stalled server, {WORKERS} workers on the default pool",
        f"StoreUnavailableError, {WORKERS} of {WORKERS}",
        elapsed,
        recovery,
    )


@pytest.mark.parametrize(("store", "mode"), SQL_STORES)
def test_64_workers_on_a_healthy_server_with_the_defaults(
    request: pytest.FixtureRequest, store: str, mode: str
) -> None:
    """The default pool and timeout serve 64 busy workers without a failure, and fairly:
    connections go to waiting workers in turn, so no worker waits for most of the run
    while others go on (SQLAlchemy's own queues let one wait the whole run, past the
    timeout in a long one)."""
    target = target_for(request, store)
    url = target.url if mode == "sync" else target.async_url
    rounds = 60
    waits: list[float] = []

    def busy(manager: Any) -> Any:
        for _ in range(rounds):
            started = time.monotonic()
            manager.count()
            waits.append(time.monotonic() - started)

    async def abusy(manager: Any) -> Any:
        for _ in range(rounds):
            started = time.monotonic()
            await manager.count()
            waits.append(time.monotonic() - started)

    with opened(url, mode, store_timeout=5.0, **target.options) as manager:
        started = time.monotonic()
        outcomes = concurrently(mode, manager, busy if mode == "sync" else abusy, WORKERS)
        elapsed = time.monotonic() - started
    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    longest = max(waits)
    assert longest < elapsed / 2, f"one operation took {longest:.2f} s of a {elapsed:.2f} s run"
    record(
        label(store),
        mode,
        f"healthy server, {WORKERS} workers x {rounds} operations, all defaults "
        "(the time: the longest operation)",
        "nothing",
        longest,
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_role_the_server_refuses_is_an_outage(request: pytest.FixtureRequest, mode: str) -> None:
    """SQLSTATE class 28 (here "role does not exist"; a wrong password is 28P01) means the
    store will not serve us: StoreUnavailableError, as the sync driver reports it too."""
    target = target_for(request, "postgresql")
    url = make_url(target.url if mode == "sync" else target.async_url)
    refused = url.set(username="ormsession_no_such_role").render_as_string(hide_password=False)
    error, elapsed = fails_fast(lambda: configure_in(mode, refused, **target.options))
    assert "ormsession_no_such_role" in str(error)
    record(
        label("postgresql"),
        mode,
        "login refused (no such role)",
        type(error).__name__,
        elapsed,
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_write_over_max_allowed_packet(proxied: Proxied, mode: str) -> None:
    """MariaDB drops the connection of a client whose packet is over max_allowed_packet,
    which looks like an outage: ormsession asks the server for its limit before sending
    again, so the app gets SessionTooLargeError and the data is sent once, not twice."""
    url, options, proxy = proxied("mysql", mode)
    # 16 MiB through the proxy takes longer than the suite's short timeout: the default.
    with opened(
        url, mode, max_data_bytes=64 * 1024 * 1024, store_timeout=5.0, **options
    ) as manager:
        limit = _max_allowed_packet()
        acknowledged = save_sessions(manager, 2, "before")
        big = "x" * (limit + 1024)
        sent_before = proxy.bytes_up
        error, elapsed = fails_fast(
            lambda: save_new(manager, blob=big), error=SessionTooLargeError, timeout=5.0
        )
        sent = proxy.bytes_up - sent_before
        assert limit <= sent < 1.5 * limit, f"{sent} bytes sent for a {limit}-byte limit"
        assert "max_allowed_packet" in str(error)
        succeeds(manager.count)
        assert_intact(manager, acknowledged)
    record(
        label("mysql"),
        mode,
        "a write over max_allowed_packet (store_timeout 5 s)",
        "SessionTooLargeError (the data sent once)",
        elapsed,
    )


def test_a_write_pymysql_doubles_past_max_allowed_packet(proxied: Proxied) -> None:
    """PyMySQL sends bytes as a hex literal, twice their size: data of three quarters of
    max_allowed_packet makes a statement over it. The size check before the retry counts
    the bytes as the driver sends them, so the app gets SessionTooLargeError (the data sent
    once), not StoreUnavailableError after sending it twice."""
    url, options, proxy = proxied("mysql", "sync")
    with opened(
        url, "sync", max_data_bytes=64 * 1024 * 1024, store_timeout=5.0, **options
    ) as manager:
        limit = _max_allowed_packet()
        acknowledged = save_sessions(manager, 2, "before")
        sent_before = proxy.bytes_up
        fails_fast(
            lambda: save_new(manager, blob="x" * (limit * 3 // 4)),
            error=SessionTooLargeError,
            timeout=5.0,
        )
        sent = proxy.bytes_up - sent_before
        assert limit <= sent < 1.5 * limit, f"{sent} bytes sent for a {limit}-byte limit"
        succeeds(manager.count)
        assert_intact(manager, acknowledged)


def _max_allowed_packet() -> int:
    admin = create_engine(MARIADB_ADMIN_URL, poolclass=NullPool)
    try:
        with admin.connect() as connection:
            return int(connection.execute(text("SELECT @@max_allowed_packet")).scalar_one())
    finally:
        admin.dispose()


def test_nothing_untyped_escapes_a_reset_mid_write(proxied: Proxied) -> None:
    """Connections reset while 16 workers write: each save is acknowledged or fails with an
    ormsession error; every acknowledged one is stored whole."""
    url, options, proxy = proxied("postgresql", "async")
    with opened(url, "async", **options) as manager:
        inner = manager.inner

        async def write() -> tuple[str, dict[str, Any]]:
            session = await inner.open(None)
            session.update(value=time.monotonic())
            cookie = await inner.save(session)
            assert cookie is not None
            return session.id, dict(session)

        async def storm() -> list[Any]:
            tasks = [asyncio.ensure_future(write()) for _ in range(16)]
            await asyncio.sleep(0.002)
            proxy.cut()
            return await asyncio.gather(*tasks, return_exceptions=True)

        outcomes = manager._runner.run(storm())
        untyped = [o for o in outcomes if isinstance(o, BaseException)]
        assert all(isinstance(o, OrmsessionError) for o in untyped), untyped
        acknowledged = {o[0]: o[1] for o in outcomes if isinstance(o, tuple)}
        assert_intact(manager, acknowledged)
        save_new(manager, after="reset")


def test_the_proxy_really_stalls(proxied: Proxied) -> None:
    """The suite's premise: a stalled proxy holds a plain connection's reply for as long
    as it stalls (the driver alone would wait the whole stall)."""
    url, _options, proxy = proxied("postgresql", "sync")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            proxy.stall()
            with lifted_after(proxy.resume, 1.0):
                started = time.monotonic()
                connection.execute(text("SELECT 1"))
                assert time.monotonic() - started >= 0.9
    finally:
        engine.dispose()


@pytest.mark.parametrize(("store", "mode"), SQL_STORES)
def test_an_apps_own_engine_on_a_stalled_server(proxied: Proxied, store: str, mode: str) -> None:
    """configure(engine=...) with an engine set up as docs/reliability.md says: ormsession
    bounds the statement itself (the watchdog, PyMySQL's timeouts, asyncio.timeout); the
    engine's pool_timeout and connect timeouts bound the rest."""
    url, options, proxy = proxied(store, mode)
    connect_args: dict[str, Any] = {"connect_timeout": 1}  # psycopg2: whole seconds
    if store == "mysql" and mode == "sync":
        connect_args = {"connect_timeout": TIMEOUT, "read_timeout": TIMEOUT}
    elif mode == "async":
        connect_args = {}  # asyncio.timeout bounds connecting too
    if mode == "sync":
        engine: Any = create_engine(url, pool_timeout=TIMEOUT, connect_args=connect_args)
    else:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(url, pool_timeout=TIMEOUT)
    try:
        with opened_on_engine(engine, mode, **options) as manager:
            acknowledged = save_sessions(manager, 2, "before")
            with lifted_after(proxy.resume):
                proxy.stall()
                error, elapsed = fails_fast(manager.count)
                fails_fast(lambda: save_new(manager, during="stall"))
            _, recovery = succeeds(manager.count)
            assert_intact(manager, acknowledged)
    finally:
        if mode == "sync":
            engine.dispose()
    record(
        label(store),
        mode,
        "stalled server, an app's own engine set up as advised above",
        type(error).__name__,
        elapsed,
        recovery,
    )


@pytest.mark.parametrize("store", ["postgresql", "mysql"])
def test_the_rollback_after_a_failed_statement_on_an_apps_engine_is_bounded_too(
    proxied: Proxied, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an app's engine a failed statement's transaction is rolled back before the
    connection goes back to the pool. The server stalls right after reporting the failure
    (a create of a taken key): the rollback must end at the operation's deadline, as the
    statement would have, not wait for the server."""
    from ormsession.repositories.base import StoredSession
    from ormsession.repositories.sql.repository import SqlRepository

    url, _, proxy = proxied(store, "sync")
    connect_args: dict[str, Any] = {"connect_timeout": 1}
    if store == "mysql":
        connect_args = {"connect_timeout": TIMEOUT, "read_timeout": 30, "write_timeout": 30}
    engine = create_engine(
        url, pool_reset_on_return=None, pool_timeout=TIMEOUT, connect_args=connect_args
    )
    roll_back = SqlRepository._roll_back

    def stalled_first(self: SqlRepository, *args: Any) -> None:
        proxy.stall()
        try:
            roll_back(self, *args)
        finally:
            proxy.resume()  # the rest of the create (a look at the row) is served

    try:
        repository = SqlRepository(engine, timeout=TIMEOUT)
        now = int(time.time() * 1_000_000)
        taken = StoredSession(b"data", 1, now, now + 3_600_000_000)
        key = f"rollback-{store}".ljust(64, "0")
        repository.delete(key)
        assert repository.create(key, taken, now)
        monkeypatch.setattr(SqlRepository, "_roll_back", stalled_first)
        with lifted_after(proxy.resume):
            started = time.monotonic()
            assert repository.create(key, taken, now) is False  # taken, and live
            elapsed = time.monotonic() - started
        assert elapsed <= TIMEOUT + SLACK, f"the create took {elapsed:.2f} s"
        monkeypatch.undo()
        assert repository.read(key, now) is not None  # and the pool serves again
    finally:
        engine.dispose()
