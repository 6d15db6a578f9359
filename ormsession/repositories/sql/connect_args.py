"""What a SQL URL's query hands the driver, checked before any connection is made.

SQLAlchemy passes a URL's query options to the driver's ``connect()`` as keyword
arguments: an unknown option or an unusable value would otherwise surface only at the
first request, as whatever the driver raises (``TypeError``, ``AttributeError`` for
PyMySQL's unknown ``charset``...). Drivers that are not installed are not checked here
(the engine reports them as a missing driver).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ormsession.errors import ConfigurationError
from ormsession.urls import SQLITE_FORMS

__all__ = ["check_connect_args"]

#: Options SQLAlchemy's asyncio adapters take off before calling the driver.
_ADAPTER_OPTIONS = {
    "async_fallback",
    "async_creator_fn",
    "prepared_statement_cache_size",
    "prepared_statement_name_func",
}
#: The options pysqlite/aiosqlite accept from a URL (any other needs ``uri=true``).
_SQLITE_OPTIONS = {"timeout", "isolation_level", "detect_types", "check_same_thread"}
_SQLITE_OPTIONS |= {"cached_statements", "uri", "autocommit"}


def check_connect_args(parsed: URL, display: str) -> None:
    """Raise :class:`ConfigurationError` when the driver would refuse ``parsed``'s options.

    ``display``: the URL as messages may show it (passwords redacted). Messages name the
    options, never their values.
    """
    try:
        dialect_class = parsed.get_dialect()
        dbapi = dialect_class.import_dbapi()
    except (ImportError, NoSuchModuleError):
        return
    if parsed.get_backend_name() == "sqlite":
        unknown = set(parsed.query) - _SQLITE_OPTIONS
        if unknown and parsed.query.get("uri") != "true":
            raise _unknown(unknown, parsed, display)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dialect: Any = dialect_class(dbapi=dbapi)  # type: ignore[call-arg]
            _args, options = dialect.create_connect_args(parsed)
    except ArgumentError:
        # SQLite's only mistake here: a path after two slashes, read as a host.
        forms = f"; write {SQLITE_FORMS}" if parsed.get_backend_name() == "sqlite" else ""
        raise ConfigurationError(f"not a valid {parsed.drivername} URL: {display}{forms}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigurationError(
            f"a query option in the SQL URL {display} has a value {parsed.drivername} "
            f"cannot use ({type(exc).__name__})"
        ) from None
    checker = _CHECKERS.get(parsed.get_driver_name())
    if checker is not None:
        checker(dict(options), parsed, display)


def _unknown(names: set[str], parsed: URL, display: str) -> ConfigurationError:
    listed = ", ".join(sorted(repr(name[:40]) for name in names))
    return ConfigurationError(
        f"the SQL URL {display} has query option(s) {listed}, unknown to {parsed.drivername}"
    )


def _by_signature(function: Callable[..., Any]) -> Callable[[dict[str, Any], URL, str], None]:
    allowed = set(inspect.signature(function).parameters) | _ADAPTER_OPTIONS

    def check(options: dict[str, Any], parsed: URL, display: str) -> None:
        unknown = set(options) - allowed
        if unknown:
            raise _unknown(unknown, parsed, display)

    return check


def _mysql(
    connect: Callable[..., Any], charset_by_name: Callable[[str], Any]
) -> Callable[[dict[str, Any], URL, str], None]:
    by_signature = _by_signature(connect)

    def check(options: dict[str, Any], parsed: URL, display: str) -> None:
        by_signature(options, parsed, display)
        charset = options.get("charset")
        if charset is not None and charset_by_name(str(charset)) is None:
            raise ConfigurationError(f"the SQL URL {display} names an unknown MySQL charset")

    return check


def _pymysql(options: dict[str, Any], parsed: URL, display: str) -> None:
    from pymysql.charset import charset_by_name
    from pymysql.connections import Connection

    _mysql(Connection.__init__, charset_by_name)(options, parsed, display)


def _asyncmy(options: dict[str, Any], parsed: URL, display: str) -> None:
    from asyncmy import connect
    from asyncmy.charset import charset_by_name

    _mysql(connect, charset_by_name)(options, parsed, display)


def _asyncpg(options: dict[str, Any], parsed: URL, display: str) -> None:
    from asyncpg import connect

    _by_signature(connect)(options, parsed, display)


def _libpq(options: dict[str, Any], parsed: URL, display: str) -> None:
    """psycopg2 hands every option to libpq, which knows its own keywords."""
    from psycopg2 import ProgrammingError
    from psycopg2.extensions import parse_dsn

    unknown = set()
    for name in options:
        try:
            parse_dsn(f"{name}=x")
        except ProgrammingError:
            unknown.add(name)
    if unknown:
        raise _unknown(unknown, parsed, display)


def _aiomysql(options: dict[str, Any], parsed: URL, display: str) -> None:
    from aiomysql import connect
    from pymysql.charset import charset_by_name

    _mysql(connect, charset_by_name)(options, parsed, display)


#: What psycopg 3's connect() takes itself; every other option goes to libpq.
_PSYCOPG_OWN_OPTIONS = {"autocommit", "prepare_threshold", "context", "row_factory"}
_PSYCOPG_OWN_OPTIONS |= {"cursor_factory"}


def _psycopg(options: dict[str, Any], parsed: URL, display: str) -> None:
    """psycopg 3 checks libpq's keywords when it builds the connection string."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import make_conninfo

    unknown = set()
    for name in set(options) - _PSYCOPG_OWN_OPTIONS:
        try:
            make_conninfo("", **{name: "x"})
        except ProgrammingError:
            unknown.add(name)
    if unknown:
        raise _unknown(unknown, parsed, display)


_CHECKERS: dict[str, Callable[[dict[str, Any], URL, str], None]] = {
    "pymysql": _pymysql,
    "asyncmy": _asyncmy,
    "aiomysql": _aiomysql,
    "asyncpg": _asyncpg,
    "psycopg2": _libpq,
    "psycopg": _psycopg,
}
