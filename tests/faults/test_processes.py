"""Faults of servers the tests own: a ``redis-server`` killed and restarted, or stopped
(SIGSTOP) and continued; the Couchbase test server paused and stopped; a SQLite file whose
write lock another connection holds."""

from __future__ import annotations

import os
import signal
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.couchbase_fixtures import COUCHBASE_PASSWORD, COUCHBASE_USER, couchbase_url
from tests.support.couchbase_server import CouchbaseTestServer
from tests.support.faults import (
    assert_intact,
    configure_in,
    fails_fast,
    lifted_after,
    opened,
    record,
    save_new,
    save_sessions,
    succeeds,
)
from tests.support.redis_servers import RedisProcess

MODES = ["sync", "async"]


# -- Redis: a process of the test's own -------------------------------------------------------
@pytest.fixture
def redis_server(redis_binaries: None) -> Iterator[RedisProcess]:
    server = RedisProcess().start()
    yield server
    server.kill()


@pytest.mark.parametrize("mode", MODES)
def test_a_redis_server_killed_and_restarted(redis_server: RedisProcess, mode: str) -> None:
    port = redis_server.port
    url = f"redis://127.0.0.1:{port}/0"
    with opened(url, mode, key_prefix="faults:") as manager:
        save_sessions(manager, 3, "before")
        redis_server.kill()
        error, elapsed = fails_fast(manager.count)
        fails_fast(lambda: save_new(manager, during="down"))
        restarted = RedisProcess(port=port).start()
        try:
            _, recovery = succeeds(manager.count)
            # This server keeps nothing on disk: what counts is that it serves again.
            acknowledged = save_sessions(manager, 2, "after")
            assert_intact(manager, acknowledged)
        finally:
            restarted.kill()
    record(
        "Redis",
        mode,
        "server killed (SIGKILL), then restarted",
        type(error).__name__,
        elapsed,
        recovery,
    )


@pytest.mark.parametrize("mode", MODES)
def test_a_redis_server_stopped_and_continued(redis_server: RedisProcess, mode: str) -> None:
    assert redis_server.pid is not None
    pid = redis_server.pid
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    with opened(url, mode, key_prefix="faults:") as manager:
        acknowledged = save_sessions(manager, 3, "before")
        with lifted_after(lambda: os.kill(pid, signal.SIGCONT)):
            os.kill(pid, signal.SIGSTOP)
            error, elapsed = fails_fast(manager.count)
            fails_fast(lambda: save_new(manager, during="stopped"))
            # The user index's calls go through the same deadline.
            fails_fast(lambda: manager.sessions_of("user:{1}"))
            fails_fast(lambda: manager.revoke_all("user:{1}"))
        _, recovery = succeeds(manager.count)
        acknowledged |= save_sessions(manager, 1, "after")
        assert_intact(manager, acknowledged)
    record(
        "Redis",
        mode,
        "server process stopped (SIGSTOP), then continued",
        type(error).__name__,
        elapsed,
        recovery,
    )


# -- Couchbase: the protocol-level test server ----------------------------------------------
@pytest.fixture
def couchbase_node() -> Iterator[CouchbaseTestServer]:
    server = CouchbaseTestServer(
        users={COUCHBASE_USER: COUCHBASE_PASSWORD}, buckets={"sessions": []}
    ).start()
    yield server
    server.stop()


@pytest.mark.parametrize("mode", MODES)
def test_a_paused_couchbase_node(couchbase_node: CouchbaseTestServer, mode: str) -> None:
    url = couchbase_url(couchbase_node)
    with opened(url, mode) as manager:
        acknowledged = save_sessions(manager, 3, "before")
        with lifted_after(couchbase_node.resume):
            couchbase_node.pause()
            error, elapsed = fails_fast(manager.count)
            _, elapsed_write = fails_fast(lambda: save_new(manager, during="pause"))
            _, elapsed_start = fails_fast(lambda: configure_in(mode, url))
        _, recovery = succeeds(manager.count)
        acknowledged |= save_sessions(manager, 1, "after")
        assert_intact(manager, acknowledged)
    record(
        "Couchbase",
        mode,
        "node stops answering: a count, a write, a start-up",
        type(error).__name__,
        max(elapsed, elapsed_write, elapsed_start),
        recovery,
    )


@pytest.mark.parametrize("mode", MODES)
def test_a_stopped_couchbase_node(couchbase_node: CouchbaseTestServer, mode: str) -> None:
    url = couchbase_url(couchbase_node)
    with opened(url, mode) as manager:
        save_sessions(manager, 2, "before")
        couchbase_node.stop()
        error, elapsed = fails_fast(manager.count)
        fails_fast(lambda: save_new(manager, during="stopped"))
    record(
        "Couchbase",
        mode,
        "node stopped (connections closed)",
        type(error).__name__,
        elapsed,
    )


# -- SQLite: a write lock held by another connection ------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_a_held_sqlite_write_lock(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.sqlite3"
    url = f"sqlite:///{path}" if mode == "sync" else f"sqlite+aiosqlite:///{path}"
    configure_in("sync", f"sqlite:///{path}", auto_migrate=True)  # create the table
    with opened(url, mode) as manager:
        acknowledged = save_sessions(manager, 3, "before")
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # the one write lock, held
            with lifted_after(
                lambda: holder.execute("ROLLBACK") if holder.in_transaction else None
            ):
                error, elapsed = fails_fast(lambda: save_new(manager, during="lock"))
                # WAL: readers go on while a writer holds the lock.
                assert_intact(manager, acknowledged)
        finally:
            holder.close()
        _, recovery = succeeds(lambda: save_new(manager, after="lock"))
        assert_intact(manager, acknowledged)
    record(
        "SQLite",
        mode,
        "write lock held by another connection (reads go on)",
        type(error).__name__,
        elapsed,
        recovery,
    )
