"""The SQL drivers beyond each database's default pair (psycopg2/asyncpg, PyMySQL/asyncmy):
psycopg 3 (sync and asyncio under one name), mysqlclient, MariaDB Connector/Python and
aiomysql, each on this test session's private database, in the modes it has.

A *driver target* is a :class:`~tests.support.stores.StoreTarget` like any store's (so
``open_store`` and ``open_async_repository`` reach it by name); :data:`DRIVER_MODES` says
which of its two URLs are real.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.engine import make_url

#: name -> (database fixture, sync drivername or None, asyncio drivername or None).
DRIVERS: dict[str, tuple[str, str | None, str | None]] = {
    "postgresql+psycopg": ("postgresql", "postgresql+psycopg", "postgresql+psycopg"),
    "mysql+mysqldb": ("mysql", "mysql+mysqldb", None),
    "mariadb+mariadbconnector": ("mysql", "mariadb+mariadbconnector", None),
    "mysql+aiomysql": ("mysql", None, "mysql+aiomysql"),
}
#: name -> the modes it runs in.
DRIVER_MODES = {
    name: tuple(mode for mode, driver in (("sync", sync), ("async", aio)) if driver)
    for name, (_, sync, aio) in DRIVERS.items()
}


def with_driver(url: str, drivername: str | None) -> str:
    """``url`` (a database's default-driver URL) through ``drivername``; a driver that has
    no such mode gets a URL that configure() refuses."""
    return (
        make_url(url)
        .set(drivername=drivername or "unsupported+mode")
        .render_as_string(hide_password=False)
    )


def _target(name: str) -> Callable[[pytest.FixtureRequest], Any]:
    backend, sync, aio = DRIVERS[name]

    def target(request: pytest.FixtureRequest) -> Any:
        from tests.support.stores import STORE_TARGETS, StoreTarget

        base = STORE_TARGETS[backend](request)  # migrated, table emptied
        return StoreTarget(with_driver(base.url, sync), with_driver(base.url, aio), base.options)

    return target


DRIVER_TARGETS = {name: _target(name) for name in DRIVERS}


def driver_params(mode: str) -> list[Any]:
    """pytest params ``<driver>-<mode>`` for every driver that has ``mode``."""
    return [
        pytest.param(name, id=f"{name}-{mode}")
        for name, modes in DRIVER_MODES.items()
        if mode in modes
    ]
