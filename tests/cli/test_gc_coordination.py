"""Coordinated gc: while one process runs gc on a database, another deletes nothing.

Deterministic: the first run is held after its first batch (its progress callback waits),
so the second one certainly starts while the first holds the lock.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

import ormsession
from ormsession import GcReport, configure, configure_async
from ormsession.gc import gc_lock
from ormsession.manager import SessionManager
from tests.cli.test_cli import insert_sessions
from tests.support.sql_fixtures import SQL_BACKENDS, async_url, sql_url
from tests.support.stores import STORE_TARGETS

WORKTREE = Path(ormsession.__file__).resolve().parents[1]


@pytest.fixture(params=SQL_BACKENDS)
def url(request: pytest.FixtureRequest) -> str:
    STORE_TARGETS[request.param](request)
    return sql_url(request, request.param)


@pytest.fixture
def manager(url: str) -> Iterator[SessionManager]:
    with configure(url=url, auto_migrate=False) as manager:
        yield manager


def expired_rows(url: str) -> int:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            query = text("SELECT COUNT(*) FROM session WHERE session_expiry <= :now")
            return int(connection.execute(query, {"now": _utcnow()}).scalar_one())
    finally:
        engine.dispose()


def _utcnow() -> object:
    import datetime as dt

    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    """``ormsession ...`` in a process of its own (this worktree's package)."""
    return subprocess.run(
        [sys.executable, "-m", "ormsession", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"PYTHONPATH": str(WORKTREE)},
    )


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_second_gc_process_finds_the_lock_held_and_deletes_nothing(
    url: str, manager: SessionManager
) -> None:
    insert_sessions(url, expired=50, live=3)
    first_batch_done, go_on = threading.Event(), threading.Event()
    reports: list[GcReport] = []

    def hold(total: int) -> None:
        first_batch_done.set()
        assert go_on.wait(60)

    first = threading.Thread(
        target=lambda: reports.append(manager.run_gc(batch_size=10, progress=hold))
    )
    first.start()
    try:
        assert first_batch_done.wait(30)
        assert expired_rows(url) == 40
        second = run_cli("gc", "--url", url)
        assert second.returncode == 0, second.stderr
        assert "another process holds the gc lock" in second.stderr
        assert second.stdout.strip() == "0"
        quiet = run_cli("gc", "--url", url, "--quiet")
        assert (quiet.returncode, quiet.stdout.strip(), quiet.stderr) == (0, "0", "")
        assert expired_rows(url) == 40  # the second and third runs deleted nothing
    finally:
        go_on.set()
        first.join(60)
    assert reports == [GcReport(50)]
    assert expired_rows(url) == 0
    # Released at the end of the run: the next one runs.
    insert_sessions_again(url)
    assert run_cli("gc", "--url", url, "--quiet").stdout.strip() == "2"


def insert_sessions_again(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE session SET session_expiry = :past WHERE session_key IN (:a, :b)"),
            {"past": _past(), "a": f"{0:064x}", "b": f"{1:064x}"},
        )
    engine.dispose()


def _past() -> object:
    import datetime as dt

    return (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).replace(tzinfo=None)


def test_two_managers_in_one_process_take_turns_too(url: str, manager: SessionManager) -> None:
    """Separate connections (SQLite: separate lock file handles) in one process."""
    insert_sessions(url, expired=5, live=1)
    with configure(url=url, auto_migrate=False) as other, gc_lock(other.repository) as held:
        assert held
        assert manager.run_gc() == GcReport(0, lock_held_elsewhere=True)
        assert manager.gc() == 0
        assert expired_rows(url) == 5
    assert manager.run_gc() == GcReport(5)


def test_dry_run_counts_and_deletes_nothing(url: str) -> None:
    insert_sessions(url, expired=12, live=4)
    done = run_cli("gc", "--url", url, "--dry-run")
    assert done.returncode == 0
    assert done.stdout.strip() == "12"
    assert "would delete 12 expired sessions (dry run)" in done.stderr
    assert expired_rows(url) == 12


def test_the_runner_skips_while_another_holds_the_lock_then_deletes(
    url: str, manager: SessionManager
) -> None:
    insert_sessions(url, expired=7, live=2)
    with configure(url=url, auto_migrate=False) as other:
        with gc_lock(other.repository) as held:
            assert held
            runner = manager.start_gc(every=0.02)
            wait_for(lambda: runner.runs >= 2)
            assert runner.last == GcReport(0, lock_held_elsewhere=True)
            assert expired_rows(url) == 7
        wait_for(lambda: expired_rows(url) == 0)
        runner.stop(timeout=10)
        assert not runner.running
        assert manager.count() == 2


def test_the_asyncio_runner_is_coordinated_with_the_sync_side(
    url: str, manager: SessionManager
) -> None:
    insert_sessions(url, expired=6, live=1)

    async def scenario() -> None:
        async with await configure_async(url=async_url(url), auto_migrate=False) as other:
            with gc_lock(manager.repository) as held:
                assert held
                runner = other.start_gc(every=0.02)
                while runner.runs < 2:
                    await asyncio.sleep(0.01)
                assert runner.last == GcReport(0, lock_held_elsewhere=True)
                assert expired_rows(url) == 6
            while runner.last is None or runner.last.removed != 6:
                await asyncio.sleep(0.01)
            # close() stops the runner it started.
        assert not runner.running

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert expired_rows(url) == 0


@pytest.mark.parametrize(
    "every", [0, -5, "0m", "soon", True, None, float("inf"), float("nan"), 10**400]
)
def test_an_interval_must_be_positive(manager: SessionManager, every: object) -> None:
    with pytest.raises(ormsession.ConfigurationError, match="gc interval"):
        manager.start_gc(every=every)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("every", "seconds"),
    [(600, 600.0), ("10m", 600.0), ("90s", 90.0), (timedelta(hours=1), 3600.0)],
)
def test_an_interval_is_written_as_the_options_write_durations(
    manager: SessionManager, every: object, seconds: float
) -> None:
    runner = manager.start_gc(every=every)  # type: ignore[arg-type]
    try:
        assert runner.every == seconds
    finally:
        runner.stop()


def test_the_asyncio_runner_started_outside_a_loop_says_where_to_start_it() -> None:
    manager = asyncio.run(configure_async(url="memory://"))
    with pytest.raises(RuntimeError, match="from inside the loop"):
        manager.start_gc(every=600)
    asyncio.run(manager.close())


def test_a_run_that_fails_releases_the_lock(url: str, manager: SessionManager) -> None:
    insert_sessions(url, expired=3, live=0)
    with pytest.raises(ormsession.ConfigurationError):
        manager.run_gc(batch_size=0)  # raises inside the lock
    with configure(url=url, auto_migrate=False) as other:
        assert other.run_gc() == GcReport(3)


def test_lock_names() -> None:
    from ormsession.repositories.sql.gc_lock import advisory_key, lock_name

    assert advisory_key("session") == advisory_key("session") != advisory_key("sessions")
    assert -(2**63) <= advisory_key("session") < 2**63
    assert lock_name("app", "session") == "ormsession-gc:app.session"
    long_name = lock_name("d" * 64, "session")
    assert len(long_name) <= 64 and long_name != lock_name("e" * 64, "session")


def test_an_asyncio_run_cancelled_as_it_takes_the_lock_leaves_it_free(
    url: str, manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancellation lands as the server's reply to the lock statement arrives (a
    runner stopped, a request cancelled): the server holds the lock for that connection,
    which must not go back to the pool holding it (every other node's gc would skip, for
    as long as the pool kept it)."""
    if url.startswith("sqlite"):
        pytest.skip("SQLite's lock is a file lock, taken without an await")
    from ormsession.repositories.sql import gc_lock as sql_gc_lock

    insert_sessions(url, expired=3, live=0)
    real = sql_gc_lock._async_scalar

    async def cancelled_on_reply(*args: object) -> bool:
        await real(*args)  # type: ignore[arg-type]
        raise asyncio.CancelledError

    async def scenario() -> None:
        async with await configure_async(url=async_url(url), auto_migrate=False) as other:
            monkeypatch.setattr(sql_gc_lock, "_async_scalar", cancelled_on_reply)
            with pytest.raises(asyncio.CancelledError):
                await other.run_gc()
            monkeypatch.setattr(sql_gc_lock, "_async_scalar", real)
            assert manager.run_gc() == GcReport(3), "the lock was left held"

    asyncio.run(scenario())
