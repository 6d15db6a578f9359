"""Building stores from URLs with no network at all, for the URL property tests.

``configure_offline(url)`` does what ``configure()`` / ``configure_async()`` do with a URL
short of the first I/O: the registry's factory builds the repository (async twins never
connect before ``start()``; the sync SQL, Redis and Sentinel repositories do not connect
when built), then it is closed. Every socket operation is refused meanwhile, so a URL that
made a store reach out would fail the property instead of reaching the network.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ormsession.config import Config
from ormsession.repositories.registry import open_store
from ormsession.urls import scheme_of

#: Schemes whose synchronous repository connects when built (their async twin is used).
CONNECT_ON_BUILD = {"redis+cluster", "couchbase", "couchbases"}
CONFIG = Config(schema_check=False, auto_migrate=False, store_timeout=1)


class NetworkUsedError(AssertionError):
    """A URL made a store touch the network while it was being configured."""


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise NetworkUsedError(f"network access while configuring: {args[:2]!r}")


@contextmanager
def no_network() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", _refuse)
        patch.setattr(socket, "create_connection", _refuse)
        patch.setattr(socket.socket, "connect", _refuse)
        patch.setattr(socket.socket, "connect_ex", _refuse)
        yield


def configure_offline(url: str, runner: asyncio.Runner) -> list[str]:
    """Build (then close) the sync and async repositories for ``url``; their reprs."""
    shown = []
    with no_network():
        repository = open_store(url, CONFIG, want_async=True)
        try:
            shown.append(repr(repository))
        finally:
            runner.run(repository.close())
        if scheme_of(url) not in CONNECT_ON_BUILD:
            repository = open_store(url, CONFIG, want_async=False)
            try:
                shown.append(repr(repository))
            finally:
                repository.close()
    return shown


def shown_cause(error: BaseException) -> BaseException | None:
    """The exception a traceback of ``error`` prints next (``raise ... from None`` hides
    the context)."""
    if error.__cause__ is not None:
        return error.__cause__
    return None if error.__suppress_context__ else error.__context__
