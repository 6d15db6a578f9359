"""Network faults between ormsession and PostgreSQL, MariaDB and Redis, made by a proxy of
the project's own in front of the shared servers (which never stall): a stalled server, a
stalled start-up, reset connections, a server that is down, a slow one, a port that
accepts and never answers. Each with the store's default driver, sync and async.

For each: the error the app sees, the time to fail (at most the timeout plus 1 s), recovery
on its own, and no acknowledged write lost or corrupt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.support.faults import (
    TIMEOUT,
    assert_intact,
    configure_in,
    fails_fast,
    lifted_after,
    opened,
    record,
    save_new,
    save_sessions,
    silent_server,
    succeeds,
)
from tests.support.tcp_proxy import TcpProxy

Proxied = Callable[[str, str], tuple[str, dict[str, Any], TcpProxy]]

STORES = {"postgresql": "PostgreSQL", "mysql": "MariaDB", "redis": "Redis"}
EVERY_STORE = [
    pytest.param(store, mode, id=f"{store}-{mode}")
    for store in STORES
    for mode in ("sync", "async")
]


def label(store: str) -> str:
    """The store's column in the fault table."""
    return STORES[store]


@pytest.mark.parametrize(("store", "mode"), EVERY_STORE)
def test_a_stalled_server(proxied: Proxied, store: str, mode: str) -> None:
    url, options, proxy = proxied(store, mode)
    with opened(url, mode, **options) as manager:
        acknowledged = save_sessions(manager, 3, "before")
        with lifted_after(proxy.resume):
            proxy.stall()
            error, elapsed = fails_fast(manager.count)
            _, elapsed_write = fails_fast(lambda: save_new(manager, during="stall"))
        _, recovery = succeeds(manager.count)
        acknowledged |= save_sessions(manager, 2, "after")
        assert_intact(manager, acknowledged)
    record(
        label(store),
        mode,
        "stalled server: a read, then a write",
        type(error).__name__,
        max(elapsed, elapsed_write),
        recovery,
    )


@pytest.mark.parametrize(("store", "mode"), EVERY_STORE)
def test_a_server_stalled_at_start_up(proxied: Proxied, store: str, mode: str) -> None:
    url, options, proxy = proxied(store, mode)
    with lifted_after(proxy.resume):
        proxy.stall()
        # configure()'s start-up read (and on SQL its schema check) meets the stall.
        error, elapsed = fails_fast(lambda: configure_in(mode, url, **options))
    with opened(url, mode, **options) as manager:
        _, recovery = succeeds(manager.count)
    record(
        label(store),
        mode,
        "stalled server at start-up (connect and handshake)",
        type(error).__name__,
        elapsed,
        recovery,
    )


@pytest.mark.parametrize(("store", "mode"), EVERY_STORE)
def test_connections_reset(proxied: Proxied, store: str, mode: str) -> None:
    """A restart (or a dropped link) kills every pooled connection: the next operation
    finds its connection dead and retries once on a new one, so the app sees nothing."""
    url, options, proxy = proxied(store, mode)
    with opened(url, mode, **options) as manager:
        acknowledged = save_sessions(manager, 3, "before")
        proxy.cut()
        _, elapsed = succeeds(manager.count)
        acknowledged |= save_sessions(manager, 2, "after")
        assert_intact(manager, acknowledged)
    record(
        label(store),
        mode,
        "every connection reset, a restart (the time: the next operation)",
        "nothing (one retry on a new connection)",
        elapsed,
    )


@pytest.mark.parametrize(("store", "mode"), EVERY_STORE)
def test_a_server_that_is_down(proxied: Proxied, store: str, mode: str) -> None:
    url, options, proxy = proxied(store, mode)
    with opened(url, mode, **options) as manager:
        acknowledged = save_sessions(manager, 3, "before")
        proxy.refuse()
        proxy.cut()
        error, elapsed = fails_fast(manager.count)
        fails_fast(lambda: save_new(manager, during="down"))
        proxy.accept()
        _, recovery = succeeds(manager.count)
        assert_intact(manager, acknowledged)
    record(
        label(store),
        mode,
        "server down (connection refused)",
        type(error).__name__,
        elapsed,
        recovery,
    )


@pytest.mark.parametrize(("store", "mode"), EVERY_STORE)
def test_a_slow_server_is_not_an_outage(proxied: Proxied, store: str, mode: str) -> None:
    """Every round trip 0.1 s slower (each direction held 50 ms): well inside the timeout,
    so everything succeeds, and every write acknowledged then is kept."""
    url, options, proxy = proxied(store, mode)
    with opened(url, mode, **options) as manager:
        acknowledged = save_sessions(manager, 1, "before")
        proxy.delay = 0.05
        written, elapsed = succeeds(lambda: save_sessions(manager, 2, "slow"))
        acknowledged |= written
        proxy.delay = 0.0
        assert_intact(manager, acknowledged)
    record(
        label(store),
        mode,
        "slow server, +0.1 s a round trip (the time: one save)",
        "nothing",
        elapsed / 2,
    )


@pytest.mark.parametrize(("store", "mode"), EVERY_STORE)
def test_a_port_that_never_answers(proxied: Proxied, store: str, mode: str) -> None:
    """A wrong port, or a server hung before its greeting: the TCP connection is accepted
    and nothing ever comes back (PyMySQL's own connect_timeout does not cover this)."""
    url, options, proxy = proxied(store, mode)
    with silent_server() as port:
        if store == "redis":
            silent = url.replace(f":{proxy.port}/", f":{port}/")
        else:
            silent = make_url(url).set(port=port).render_as_string(hide_password=False)
        error, elapsed = fails_fast(lambda: configure_in(mode, silent, **options))
    record(
        label(store),
        mode,
        "a port that accepts and never answers",
        type(error).__name__,
        elapsed,
    )
    assert elapsed >= TIMEOUT * 0.8  # it waited for the handshake, as long as allowed
