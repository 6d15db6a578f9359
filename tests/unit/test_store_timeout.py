"""The pieces behind ``store_timeout``, without a server: the option and its old name, the
watchdog, the fair pool queue, and the error classification."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from sqlalchemy.util.queue import Empty

import ormsession
from ormsession.config import Config
from ormsession.errors import ConfigurationError, SessionTooLargeError
from ormsession.repositories.sql.deadlines import operation_deadline
from ormsession.repositories.sql.errors import (
    payload_size,
    server_packet_error,
    unavailable_sqlstate,
)
from ormsession.repositories.sql.pools import _FairQueue
from ormsession.repositories.sql.watchdog import Watchdog
from ormsession.settings import load_config


def test_store_timeout_defaults_to_five_seconds_and_is_validated() -> None:
    assert Config().store_timeout == 5.0
    assert Config(store_timeout="0.5").store_timeout == 0.5
    with pytest.raises(ConfigurationError, match="store_timeout"):
        Config(store_timeout=0)


def test_the_old_name_is_refused_with_the_new_one() -> None:
    with pytest.raises(ConfigurationError, match="connect_timeout is now store_timeout"):
        ormsession.configure(url="memory://", connect_timeout=2)
    with pytest.raises(ConfigurationError, match="connect_timeout is now store_timeout"):
        Config(connect_timeout=2)


def test_the_old_environment_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORMSESSION_CONNECT_TIMEOUT", "2")
    with pytest.raises(ConfigurationError, match="ORMSESSION_STORE_TIMEOUT"):
        load_config()
    monkeypatch.delenv("ORMSESSION_CONNECT_TIMEOUT")
    monkeypatch.setenv("ORMSESSION_STORE_TIMEOUT", "2")
    assert load_config().store_timeout == 2.0


# -- the watchdog --------------------------------------------------------------------------
def test_the_watchdog_shuts_a_late_socket_down_and_says_so() -> None:
    watchdog = Watchdog()
    ours, theirs = socket.socketpair()
    try:
        token = watchdog.arm(ours.fileno(), time.monotonic() + 0.1)
        started = time.monotonic()
        assert ours.recv(1) == b""  # blocked until the shutdown: end of stream
        assert 0.05 < time.monotonic() - started < 1.0
        assert watchdog.disarm(token) is True
    finally:
        ours.close()
        theirs.close()


def test_a_disarmed_socket_is_left_alone() -> None:
    watchdog = Watchdog()
    ours, theirs = socket.socketpair()
    try:
        later = watchdog.arm(ours.fileno(), time.monotonic() + 10)
        soon = watchdog.arm(ours.fileno(), time.monotonic() + 0.05)
        assert watchdog.disarm(soon) is False  # disarmed before its deadline
        time.sleep(0.2)
        theirs.sendall(b"x")
        assert ours.recv(1) == b"x"  # still open both ways
        assert watchdog.disarm(later) is False
    finally:
        ours.close()
        theirs.close()


# -- the fair queue ------------------------------------------------------------------------
def test_a_returned_connection_goes_to_the_longest_waiter() -> None:
    queue: _FairQueue[str] = _FairQueue(maxsize=1)
    got: list[tuple[int, str]] = []

    def wait(number: int) -> None:
        got.append((number, queue.get(True, 5)))

    first = threading.Thread(target=wait, args=(1,))
    first.start()
    time.sleep(0.05)
    second = threading.Thread(target=wait, args=(2,))
    second.start()
    time.sleep(0.05)
    queue.put("a", False)
    # The one returning it cannot take it back ahead of the waiters.
    with pytest.raises(Empty):
        queue.get(False)
    queue.put("b", False)
    first.join(2)
    second.join(2)
    assert sorted(got) == [(1, "a"), (2, "b")]  # who got what (they may wake in any order)


def test_the_pool_wait_ends_at_the_operation_deadline() -> None:
    queue: _FairQueue[str] = _FairQueue(maxsize=1)
    with operation_deadline(0.2):
        started = time.monotonic()
        with pytest.raises(Empty):
            queue.get(True, 30)  # SQLAlchemy's own pool_timeout would be 30 s
    assert time.monotonic() - started < 1.0
    queue.put("a", False)  # the waiter that gave up is not handed anything
    assert queue.get(False) == "a"


# -- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sqlstate", "unavailable"),
    [
        ("28P01", True),  # wrong password
        ("28000", True),  # no such role
        ("3D000", True),  # no such database
        ("53300", True),  # too many connections
        ("57P03", True),  # cannot connect now
        ("08006", True),  # connection failure
        ("23505", False),  # unique violation
        ("42P01", False),  # no such table
        (None, False),
    ],
)
def test_postgresql_sqlstates_that_mean_an_outage(sqlstate: str | None, unavailable: bool) -> None:
    assert unavailable_sqlstate(sqlstate) is unavailable


def test_the_size_of_a_statement_and_the_packet_error() -> None:
    assert payload_size("INSERT x", (b"abc", "de", 3, None)) == 8 + 3 + 2
    assert payload_size("Q", {"a": b"xy"}) == 3
    assert payload_size("Q", (b"xy", "z"), lambda value: 2 * len(value)) == 1 + 4 + 1
    error = server_packet_error(20, 16)
    assert isinstance(error, SessionTooLargeError)
    assert (error.size, error.limit) == (20, 16)
    assert "max_allowed_packet" in str(error)


def test_the_async_queue_hands_over_in_turn_and_times_out_cleanly() -> None:
    from sqlalchemy.util import greenlet_spawn

    from ormsession.repositories.sql.pools import _FairAsyncQueue

    async def scenario() -> list[str]:
        queue: _FairAsyncQueue[str] = _FairAsyncQueue(maxsize=1)
        got: list[str] = []

        async def wait(timeout: float | None) -> None:
            try:
                got.append(await greenlet_spawn(queue.get, True, timeout))
            except Empty:
                got.append("timed out")

        impatient = asyncio.ensure_future(wait(0.05))
        first = asyncio.ensure_future(wait(None))
        await asyncio.sleep(0.2)  # the impatient one gave up
        queue.put("a", False)  # goes to the one still waiting, not to the one who left
        await asyncio.gather(impatient, first)
        queue.put("b", False)
        got.append(await greenlet_spawn(queue.get, False))
        return got

    assert asyncio.run(scenario()) == ["timed out", "a", "b"]
