"""The deadline rule on the SQL drivers beyond each database's default pair (psycopg 3,
mysqlclient, MariaDB Connector/Python, aiomysql), in each mode they have: a stalled server,
a server stalled at start-up, a port that never answers, and a stalled server under an
app's own engine. Every operation ends within the timeout (plus the suite's slack) with
StoreUnavailableError, the store recovers on its own, and no acknowledged write is lost.
Faults are made by the project's own proxy (the shared servers never stall)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from tests.support.drivers import DRIVER_MODES, DRIVERS
from tests.support.faults import (
    TIMEOUT,
    assert_intact,
    configure_in,
    fails_fast,
    lifted_after,
    opened,
    opened_on_engine,
    save_new,
    save_sessions,
    silent_server,
    succeeds,
)
from tests.support.stores import target_for
from tests.support.tcp_proxy import TcpProxy

PORTS = {"postgresql": 5432, "mysql": 3306}
EVERY_DRIVER = [
    pytest.param(name, mode, id=f"{name}-{mode}")
    for name, modes in DRIVER_MODES.items()
    for mode in modes
]
Proxied = Callable[[str, str], tuple[str, dict[str, Any], TcpProxy]]


@pytest.fixture
def proxied(request: pytest.FixtureRequest) -> Iterator[Proxied]:
    """``proxied(driver, mode)``: the test's URL through that driver and a new proxy, the
    options that go with it, and the proxy."""
    proxies: list[TcpProxy] = []

    def make(name: str, mode: str) -> tuple[str, dict[str, Any], TcpProxy]:
        target = target_for(request, name)
        proxy = TcpProxy(("127.0.0.1", PORTS[DRIVERS[name][0]])).start()
        proxies.append(proxy)
        url = make_url(target.url if mode == "sync" else target.async_url)
        return url.set(port=proxy.port).render_as_string(hide_password=False), target.options, proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.mark.parametrize(("name", "mode"), EVERY_DRIVER)
def test_a_stalled_server(proxied: Proxied, name: str, mode: str) -> None:
    url, options, proxy = proxied(name, mode)
    with opened(url, mode, **options) as manager:
        acknowledged = save_sessions(manager, 3, "before")
        with lifted_after(proxy.resume):
            proxy.stall()
            fails_fast(manager.count)
            fails_fast(lambda: save_new(manager, during="stall"))
        succeeds(manager.count)
        acknowledged |= save_sessions(manager, 2, "after")
        assert_intact(manager, acknowledged)


@pytest.mark.parametrize(("name", "mode"), EVERY_DRIVER)
def test_a_server_stalled_at_start_up(proxied: Proxied, name: str, mode: str) -> None:
    url, options, proxy = proxied(name, mode)
    with lifted_after(proxy.resume):
        proxy.stall()
        fails_fast(lambda: configure_in(mode, url, **options))
    with opened(url, mode, **options) as manager:
        succeeds(manager.count)


@pytest.mark.parametrize(("name", "mode"), EVERY_DRIVER)
def test_a_port_that_never_answers(proxied: Proxied, name: str, mode: str) -> None:
    url, options, _ = proxied(name, mode)
    with silent_server() as port:
        silent = make_url(url).set(port=port).render_as_string(hide_password=False)
        _, elapsed = fails_fast(lambda: configure_in(mode, silent, **options))
    assert elapsed >= TIMEOUT * 0.8  # it waited for the handshake, as long as allowed


@pytest.mark.parametrize(("name", "mode"), EVERY_DRIVER)
def test_a_stalled_server_under_an_apps_engine(proxied: Proxied, name: str, mode: str) -> None:
    """An app's engine set up as docs/stores/sql.md advises (pool_timeout, and the C
    libraries' connect_timeout in whole seconds): ormsession bounds the statement itself
    (the watchdog, or the asyncio deadline), the engine's settings the rest."""
    url, options, proxy = proxied(name, mode)
    timeout = TIMEOUT
    if name == "postgresql+psycopg" and mode == "sync":
        # psycopg 3 raises any connect_timeout below 2 s to 2 s (libpq's rule): an app's
        # engine on it connects no faster than that, so its store_timeout is 2 s here.
        timeout = 2.0
    options = {**options, "store_timeout": timeout}
    if mode == "sync":
        connect_args = {"connect_timeout": 1}
        engine: Any = create_engine(url, pool_timeout=timeout, connect_args=connect_args)
    else:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(url, pool_timeout=TIMEOUT)
    try:
        with opened_on_engine(engine, mode, **options) as manager:
            acknowledged = save_sessions(manager, 2, "before")
            with lifted_after(proxy.resume, timeout + 3.0):
                proxy.stall()
                fails_fast(manager.count, timeout=timeout)
                fails_fast(lambda: save_new(manager, during="stall"), timeout=timeout)
            succeeds(manager.count)
            assert_intact(manager, acknowledged)
    finally:
        if mode == "sync":
            engine.dispose()
