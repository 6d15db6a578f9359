"""SQL URLs: parsed and checked, with errors that name the fix and hide the password."""

from __future__ import annotations

from importlib.util import find_spec

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ormsession.errors import ConfigurationError
from ormsession.urls import redact_url

__all__ = ["SQL_EXTRAS", "parse_sql_url"]

#: Which extra installs the driver for a dialect+driver pair.
SQL_EXTRAS = {
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "",
}
_ASYNC_DRIVERS = {"asyncpg", "psycopg_async", "aiomysql", "asyncmy", "aiosqlite"}


def parse_sql_url(url: str | URL, *, want_async: bool | None = False) -> URL:
    """Parse and check a SQL URL, with errors that name the fix and hide the password.

    ``want_async``: True/False require an asyncio/synchronous driver; None accepts either.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"not a valid SQL URL: {redact_url(str(url))}") from exc
    if parsed.get_backend_name() == "postgres":
        raise ConfigurationError("use 'postgresql://' (SQLAlchemy dropped 'postgres://')")
    backend = parsed.drivername.split("+", 1)[0]
    if backend not in SQL_EXTRAS:
        raise ConfigurationError(
            f"unsupported SQL database {backend!r} in {redact_url(str(url))}: ormsession "
            "supports postgresql, mysql, mariadb and sqlite"
        )
    if "+" not in parsed.drivername:
        parsed = parsed.set(drivername=_default_driver(parsed.drivername, want_async))
    driver = parsed.drivername.split("+", 1)[1]
    is_async = driver in _ASYNC_DRIVERS
    if want_async is None:
        return parsed
    if is_async and not want_async:
        raise ConfigurationError(
            f"{parsed.drivername!r} is an asyncio driver: use ormsession.configure_async()"
        )
    if want_async and not is_async:
        raise ConfigurationError(
            f"{parsed.drivername!r} is a synchronous driver: use ormsession.configure(), or an "
            "async driver (postgresql+asyncpg, mysql+asyncmy, sqlite+aiosqlite)"
        )
    return parsed


#: For a URL without a driver: the drivers to try, in order (the first installed wins).
_DEFAULT_DRIVERS = {
    ("postgresql", False): ("psycopg2", "psycopg"),
    ("postgresql", True): ("asyncpg", "psycopg_async"),
    ("mysql", False): ("pymysql", "mysqldb"),
    ("mysql", True): ("asyncmy", "aiomysql"),
    ("mariadb", False): ("pymysql", "mysqldb"),
    ("mariadb", True): ("asyncmy", "aiomysql"),
    ("sqlite", False): ("pysqlite",),
    ("sqlite", True): ("aiosqlite",),
}
_DRIVER_MODULES = {"psycopg_async": "psycopg", "mysqldb": "MySQLdb", "pysqlite": "sqlite3"}


def _default_driver(backend: str, want_async: bool | None) -> str:
    """``postgresql://`` means "whichever driver ormsession's extras installed": SQLAlchemy
    2.1 defaults to psycopg 3, while ``ormsession[postgres]`` installs psycopg2."""
    candidates = _DEFAULT_DRIVERS.get((backend, bool(want_async)))
    if not candidates:
        return backend
    for driver in candidates:
        if find_spec(_DRIVER_MODULES.get(driver, driver)) is not None:
            return f"{backend}+{driver}"
    return f"{backend}+{candidates[0]}"
