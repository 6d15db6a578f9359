"""The fault suite's fixtures, and the table of measured times printed after the run::

    python -m pytest tests/faults -p no:cacheprovider

(``ORMSESSION_FAULT_TABLE=path`` also writes the table to that file.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.support.faults import MEASUREMENTS, fault_table
from tests.support.stores import target_for
from tests.support.tcp_proxy import TcpProxy

#: Where each network store listens (the proxies forward there).
SERVERS = {"postgresql": 5432, "mysql": 3306, "redis": 6379}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not MEASUREMENTS:
        return
    lines = fault_table()
    terminalreporter.section("fault table (docs/reliability.md, Faults)")
    for line in lines:
        terminalreporter.write_line(line)
    path = os.environ.get("ORMSESSION_FAULT_TABLE")
    if path:
        with open(path, "w", encoding="utf-8") as table:
            table.write("\n".join(lines) + "\n")


@pytest.fixture
def proxied(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[[str, str], tuple[str, dict[str, Any], TcpProxy]]]:
    """``proxied(store, mode)``: the test's URL of ``store`` (postgresql, mysql or redis; a
    private database or key prefix) through a new :class:`TcpProxy`, the options that go
    with it, and the proxy."""
    proxies: list[TcpProxy] = []

    def make(store: str, mode: str) -> tuple[str, dict[str, Any], TcpProxy]:
        target = target_for(request, store)
        proxy = TcpProxy(("127.0.0.1", SERVERS[store])).start()
        proxies.append(proxy)
        url = target.url if mode == "sync" else target.async_url
        if store == "redis":
            url = url.replace(":6379/", f":{proxy.port}/")
        else:
            url = make_url(url).set(port=proxy.port).render_as_string(hide_password=False)
        return url, dict(target.options), proxy

    yield make
    for proxy in proxies:
        proxy.stop()
