"""A detector for blocking calls made on a running event loop's thread.

Patches the entry points through which code can block a thread on I/O or time — blocking
sockets, ``time.sleep``, ``select``, the synchronous database drivers — so that calling one
from the thread that runs an event loop raises :class:`BlockingCallError`. Non-blocking
sockets (what asyncio's transports use) and calls from worker threads (aiosqlite runs
sqlite3 in its own thread) are allowed.
"""

from __future__ import annotations

import asyncio
import select
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest


class BlockingCallError(AssertionError):
    """A blocking call ran on the event loop's thread."""


def _on_loop_thread() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _guard(
    name: str, original: Callable[..., Any], allowed: Callable[..., bool] = lambda *a, **k: False
) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if _on_loop_thread() and not allowed(*args, **kwargs):
            raise BlockingCallError(f"blocking call {name} on the event loop thread")
        return original(*args, **kwargs)

    return guarded


def _non_blocking(sock: socket.socket, *args: Any, **kwargs: Any) -> bool:
    return sock.gettimeout() == 0.0


@contextmanager
def no_blocking_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Within the block, blocking calls on any event loop thread raise."""
    for method in (
        "recv",
        "recv_into",
        "recvfrom",
        "send",
        "sendall",
        "sendto",
        "connect",
        "accept",
    ):
        original = getattr(socket.socket, method)
        monkeypatch.setattr(
            socket.socket, method, _guard(f"socket.{method}", original, _non_blocking)
        )
    monkeypatch.setattr(time, "sleep", _guard("time.sleep", time.sleep))
    monkeypatch.setattr(select, "select", _guard("select.select", select.select))
    monkeypatch.setattr(sqlite3, "connect", _guard("sqlite3.connect", sqlite3.connect))
    for module_name, attribute in (("psycopg2", "connect"), ("pymysql", "connect")):
        module = __import__(module_name)
        monkeypatch.setattr(
            module, attribute, _guard(f"{module_name}.{attribute}", getattr(module, attribute))
        )
    yield
