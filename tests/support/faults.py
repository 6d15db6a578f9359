"""What the fault suite (``tests/faults``) shares: the timeout it runs with, managers in
either mode behind one sync interface, measured failures and recoveries, the checks that no
acknowledged write was lost, and the table of measured times it prints at the end.

Every fault is made on the project's own side of the wire (a :class:`TcpProxy`, a
``redis-server`` or Couchbase test server the test owns, its own SQLite file, its own
database connections): the shared servers never stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import ormsession
from ormsession.cookies import parse_cookie_header
from ormsession.errors import OrmsessionError, StoreUnavailableError
from tests.support.stores import ManagerFacade

#: The store timeout the suite runs with, and the slack the invariant allows on top.
TIMEOUT = 0.5
SLACK = 1.0
#: A fault that the code under test fails to bound is lifted after this long, so that a
#: hanging operation ends (late, failing its assertion) instead of hanging the suite.
LIFT_AFTER = TIMEOUT + SLACK + 2.0


@dataclass(frozen=True)
class Measurement:
    """One measured fault on one store in one mode."""

    store: str  # PostgreSQL, MariaDB, Redis, Couchbase, SQLite
    mode: str  # sync, async
    fault: str
    outcome: str  # what the app saw: the error type, or "nothing"
    seconds: float  # time to fail (for faults the app does not see: the time taken)
    recovery: float | None  # seconds the first operation after the fault took, if any


#: Every measurement of this test session, for the table printed at the end.
MEASUREMENTS: list[Measurement] = []
#: The columns of the table, and the drivers behind each one's "sync / async".
STORES = {
    "PostgreSQL": "psycopg2 / asyncpg",
    "MariaDB": "PyMySQL / asyncmy",
    "Redis": "redis-py / redis.asyncio",
    "Couchbase": "couchbase / acouchbase",
    "SQLite": "sqlite3 / aiosqlite",
}


def record(
    store: str,
    mode: str,
    fault: str,
    outcome: str,
    seconds: float,
    recovery: float | None = None,
) -> None:
    assert store in STORES, store
    MEASUREMENTS.append(Measurement(store, mode, fault, outcome, seconds, recovery))


def fault_table() -> list[str]:
    """The measurements as a Markdown table: one row per fault, one column per store with
    its "sync / async" seconds, then the slowest first operation after the fault."""
    faults: dict[str, list[Measurement]] = {}
    for row in MEASUREMENTS:
        faults.setdefault(row.fault, []).append(row)
    lines = [
        "| fault | the app sees | " + " | ".join(STORES) + " | first operation after |",
        "|---|---|" + "---|" * len(STORES) + "---|",
    ]
    for fault, rows in faults.items():
        outcomes = " or ".join(dict.fromkeys(row.outcome for row in rows))
        cells = [_cell([row for row in rows if row.store == store]) for store in STORES]
        recoveries = [row.recovery for row in rows if row.recovery is not None]
        after = f"succeeds, {max(recoveries):.2f} s at most" if recoveries else "-"
        lines.append(f"| {fault} | {outcomes} | " + " | ".join(cells) + f" | {after} |")
    return lines


def _cell(rows: list[Measurement]) -> str:
    if not rows:
        return "-"
    by_mode = {row.mode: f"{row.seconds:.2f}" for row in rows}
    return f"{by_mode.get('sync', '-')} / {by_mode.get('async', '-')}"


# -- managers in either mode --------------------------------------------------------------------
@contextlib.contextmanager
def opened(url: str, mode: str, **options: Any) -> Iterator[Any]:
    """A manager for ``url`` (sync, or async behind a :class:`ManagerFacade`), configured
    with the suite's timeout unless ``options`` say otherwise."""
    options.setdefault("store_timeout", TIMEOUT)
    if mode == "sync":
        manager = ormsession.configure(url=url, **options)
        try:
            yield manager
        finally:
            manager.close()
        return
    with asyncio.Runner() as runner:
        inner = runner.run(ormsession.configure_async(url=url, **options))
        try:
            yield ManagerFacade(inner, runner)
        finally:
            runner.run(inner.close())


@contextlib.contextmanager
def opened_on_engine(engine: Any, mode: str, **options: Any) -> Iterator[Any]:
    """:func:`opened` on an app's own ``Engine`` (or ``AsyncEngine``), left open after."""
    options.setdefault("store_timeout", TIMEOUT)
    if mode == "sync":
        with ormsession.configure(engine=engine, **options) as manager:
            yield manager
        return
    with asyncio.Runner() as runner:
        inner = runner.run(ormsession.configure_async(engine=engine, **options))
        try:
            yield ManagerFacade(inner, runner)
        finally:
            runner.run(inner.close())
            runner.run(engine.dispose())  # the engine's connections belong to this loop


def configure_in(mode: str, url: str, **options: Any) -> None:
    """Configure (and close) a manager: start-up talks to the store."""
    options.setdefault("store_timeout", TIMEOUT)
    if mode == "sync":
        ormsession.configure(url=url, **options).close()
        return

    async def start() -> None:
        manager = await ormsession.configure_async(url=url, **options)
        await manager.close()

    asyncio.run(start())


# -- failing, recovering -----------------------------------------------------------------------
def fails_fast(
    call: Callable[[], Any],
    error: type[BaseException] = StoreUnavailableError,
    timeout: float = TIMEOUT,
) -> tuple[BaseException, float]:
    """Run ``call``; it must raise ``error`` within ``timeout`` plus slack. Returns the
    error and the seconds it took."""
    started = time.monotonic()
    with pytest.raises(error) as caught:
        call()
    elapsed = time.monotonic() - started
    assert elapsed <= timeout + SLACK, f"{error.__name__} after {elapsed:.2f} s"
    return caught.value, elapsed


def succeeds(call: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``call`` (it must not raise); returns its result and the seconds it took."""
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


@contextlib.contextmanager
def lifted_after(lift: Callable[[], None], seconds: float = LIFT_AFTER) -> Iterator[None]:
    """Undo a fault ``seconds`` from now at the latest (and on leaving the block), so an
    operation the code fails to bound ends late instead of hanging the suite."""
    timer = threading.Timer(seconds, lift)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        lift()


# -- sessions: written, then checked --------------------------------------------------------
def cookie_id(set_cookie: str | None) -> str:
    assert set_cookie is not None, "expected a Set-Cookie value"
    return parse_cookie_header(set_cookie.split(";", 1)[0])["session"]


def save_new(manager: Any, **data: Any) -> str:
    """A new session with ``data``, saved (acknowledged); its id."""
    session = manager.open(None)
    session.update(data)
    return cookie_id(manager.save(session))


def save_sessions(manager: Any, count: int, tag: str) -> dict[str, dict[str, Any]]:
    """``count`` acknowledged sessions: id -> data."""
    written: dict[str, dict[str, Any]] = {}
    for number in range(count):
        data = {"tag": tag, "number": number, "blob": f"{tag}-{number}-" * 20}
        written[save_new(manager, **data)] = data
    return written


def assert_intact(manager: Any, acknowledged: dict[str, dict[str, Any]]) -> None:
    """Every acknowledged session reads back whole (none lost, none corrupt)."""
    for session_id, data in acknowledged.items():
        session = manager.open(session_id)
        assert not session.is_new, "an acknowledged session was lost"
        assert dict(session) == data, "an acknowledged session came back changed"


def try_save(manager: Any, session_id: str, **changes: Any) -> bool:
    """Save ``changes`` to a session during a fault: True if acknowledged; False if it
    failed with an ormsession error (never anything untyped)."""
    try:
        session = manager.open(session_id)
        session.update(changes)
        manager.save(session)
    except OrmsessionError:
        return False
    return True


# -- a server that accepts connections and never answers -----------------------------------
@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts TCP connections and never sends a byte (a wrong
    port, or a server hung before its greeting); its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        for sock in [*accepted, listener]:
            sock.close()
