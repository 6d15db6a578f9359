"""SQL URLs: parsed and checked, with errors that name the fix and hide the password."""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ormsession.errors import ConfigurationError
from ormsession.repositories.sql.connect_args import check_connect_args
from ormsession.urls import host_problem, redact_url, scheme_of, unencoded_userinfo_hint

__all__ = [
    "DRIVER_EXTRAS",
    "SQL_EXTRAS",
    "check_sqlite_directory",
    "display_sql_url",
    "extra_for",
    "parse_sql_url",
    "synchronous_url",
    "with_synchronous_driver",
]

#: Which extra installs each dialect's default synchronous driver.
SQL_EXTRAS = {
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "",
}
#: Which extra installs each driver ormsession supports (docs/stores/sql.md, Drivers).
DRIVER_EXTRAS = {
    "psycopg2": "postgres",
    "psycopg": "postgres-psycopg",
    "psycopg_async": "postgres-psycopg",
    "asyncpg": "async-postgres",
    "pymysql": "mysql",
    "mysqldb": "mysqlclient",
    "mariadbconnector": "mariadb",
    "asyncmy": "async-mysql",
    "aiomysql": "async-aiomysql",
    "pysqlite": "",
    "aiosqlite": "async-sqlite",
}
_ASYNC_DRIVERS = {"asyncpg", "psycopg_async", "aiomysql", "asyncmy", "aiosqlite"}
#: Drivers with a synchronous and an asyncio side under one name: SQLAlchemy's
#: create_async_engine() takes ``postgresql+psycopg://`` to mean psycopg's asyncio side.
_DUAL_DRIVERS = {"psycopg"}
_PASSWORD_OPTIONS = ("password", "passwd")


def _password_from_query(parsed: URL, display: str) -> URL:
    """``?password=`` as the URL's password: drivers take it either way, but only the
    URL's own password is hidden by SQLAlchemy's renderings (reprs, error messages)."""
    given = [name for name in _PASSWORD_OPTIONS if name in parsed.query]
    if not given:
        return parsed
    password = parsed.query[given[0]]
    if len(given) > 1 or parsed.password is not None or not isinstance(password, str):
        raise ConfigurationError(f"the SQL URL {display} gives its password more than once")
    return parsed.difference_update_query(given).set(password=password)


def display_sql_url(url: URL) -> str:
    """``url`` for messages and reprs: SQLAlchemy hides its password; options such as
    libpq's ``sslpassword`` are hidden here too."""
    return redact_url(url.render_as_string(hide_password=True))


def _as_tuple(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return value if isinstance(value, tuple) else (value,)


def _check_parts(parsed: URL, display: str, hint: str) -> None:
    """What no driver can use, refused before any driver sees it. ``hint``: what to append
    to a problem of the user name or host (a password's unencoded ``@``)."""
    if parsed.username and any(c in parsed.username for c in "?#/@="):
        # Not a user name: a query or a password the URL parser took for one.
        raise ConfigurationError(f"the SQL URL {display} has no valid user name{hint}")
    values = [v for value in parsed.query.values() for v in _as_tuple(value)]
    texts = (parsed.username, parsed.host, parsed.database, *parsed.query, *values)
    if any(text is not None and "\x00" in text for text in texts):
        raise ConfigurationError(f"the SQL URL {display} contains a NUL character")
    if parsed.host:
        problem = host_problem(parsed.host)
        if problem:
            raise ConfigurationError(f"invalid host in the SQL URL {display}: {problem}{hint}")
    backend = parsed.get_backend_name()
    if (
        backend in ("mysql", "mariadb")
        and not parsed.database
        and "read_default_file" not in parsed.query
    ):
        raise ConfigurationError(f"name the database in the SQL URL {display}: .../<db>")


def parse_sql_url(url: str | URL, *, want_async: bool | None = False) -> URL:
    """Parse and check a SQL URL, with errors that name the fix and hide the password.

    ``want_async``: True/False require an asyncio/synchronous driver; None accepts either.
    A password given as ``?password=`` (or MySQL's ``?passwd=``) is moved to the URL's
    password, where SQLAlchemy hides it.
    """
    display = redact_url(url) if isinstance(url, str) else display_sql_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        # Not chained: the parser's message can quote part of the password.
        hint = unencoded_userinfo_hint(url) if isinstance(url, str) else ""
        raise ConfigurationError(f"not a valid SQL URL: {display}{hint}") from None
    if parsed.drivername != parsed.drivername.lower():
        # A scheme is case-insensitive (RFC 3986), and the store was picked that way;
        # SQLAlchemy's dialect names are lowercase.
        parsed = parsed.set(drivername=parsed.drivername.lower())
    parsed = _password_from_query(parsed, display)
    _check_parts(parsed, display, unencoded_userinfo_hint(url) if isinstance(url, str) else "")
    if parsed.get_backend_name() == "postgres":
        # libpq, Heroku and many PaaS write postgres://; SQLAlchemy 1.4 dropped that alias.
        fixed = "postgresql" + display.split("postgres", 1)[1] if "://" in display else ""
        raise ConfigurationError(
            "'postgres://' is libpq's spelling; SQLAlchemy (and so ormsession) needs "
            f"'postgresql://' (or 'postgresql+psycopg2://'): write {fixed or 'postgresql://...'}"
        )
    backend = parsed.drivername.split("+", 1)[0]
    if backend not in SQL_EXTRAS:
        raise ConfigurationError(
            f"unsupported SQL database {backend[:40]!r} in {display}: ormsession "
            "supports postgresql, mysql, mariadb and sqlite"
        )
    if "+" not in parsed.drivername:
        parsed = parsed.set(drivername=_default_driver(parsed.drivername, want_async))
    driver = parsed.drivername.split("+", 1)[1]
    _check_driver_name(parsed, display)
    is_async = driver in _ASYNC_DRIVERS
    if want_async is None:
        return parsed  # the driver is not settled: its options are checked when it is
    if driver in _DUAL_DRIVERS:
        is_async = want_async
    if is_async and not want_async:
        raise ConfigurationError(
            f"{parsed.drivername!r} is an asyncio driver: use ormsession.configure_async()"
        )
    if want_async and not is_async:
        raise ConfigurationError(
            f"{parsed.drivername!r} is a synchronous driver, and asyncio code (configure_async, "
            "the ASGI middleware) needs an asyncio one: postgresql+asyncpg, postgresql+psycopg, "
            "mysql+asyncmy, mysql+aiomysql, sqlite+aiosqlite (a synchronous app uses "
            "ormsession.configure())"
        )
    check_connect_args(parsed, display)
    return parsed


def _check_driver_name(parsed: URL, display: str) -> None:
    """Refuse a driver name SQLAlchemy has no dialect for (``postgresql+psycopg3``, a typo):
    it is no missing package, and the engine would report it as one whose extra is already
    installed. Loading the dialect class imports no driver."""
    if parsed.get_driver_name() in DRIVER_EXTRAS:
        return
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        backend = parsed.get_backend_name()
        known = ", ".join(
            f"{backend}+{driver}"
            for (name, _async), drivers in _DEFAULT_DRIVERS.items()
            if name == backend
            for driver in drivers
            if driver != "psycopg_async"
        )
        raise ConfigurationError(
            f"{parsed.drivername[:60]!r} in {display} names no SQLAlchemy driver: write "
            f"{known} (docs/stores/sql.md, Drivers)"
        ) from None


def synchronous_url(url: str) -> str:
    """``url`` with an asyncio SQL driver replaced by the same database's synchronous one
    (the first installed, as for a URL without a driver), for the synchronous tools: the
    command line runs on the app's ``ORMSESSION_URL``, which an asyncio app sets to
    ``postgresql+asyncpg://``. Any other URL comes back as it is."""
    if scheme_of(url).split("+", 1)[0] not in SQL_EXTRAS:
        return url
    parsed = parse_sql_url(url, want_async=None)
    sync = with_synchronous_driver(parsed)
    return url if sync is parsed else sync.render_as_string(hide_password=False)


def with_synchronous_driver(parsed: URL) -> URL:
    """``parsed`` (from :func:`parse_sql_url`) with an asyncio driver replaced by the
    database's synchronous one, chosen as for a URL without a driver; else ``parsed``."""
    if parsed.get_driver_name() in _ASYNC_DRIVERS:
        return parsed.set(drivername=parsed.get_backend_name())
    return parsed


#: For a URL without a driver: the drivers to try, in order (the first installed wins).
_DEFAULT_DRIVERS = {
    ("postgresql", False): ("psycopg2", "psycopg"),
    ("postgresql", True): ("asyncpg", "psycopg_async"),
    ("mysql", False): ("pymysql", "mysqldb", "mariadbconnector"),
    ("mysql", True): ("asyncmy", "aiomysql"),
    ("mariadb", False): ("pymysql", "mysqldb", "mariadbconnector"),
    ("mariadb", True): ("asyncmy", "aiomysql"),
    ("sqlite", False): ("pysqlite",),
    ("sqlite", True): ("aiosqlite",),
}
_DRIVER_MODULES = {
    "psycopg_async": "psycopg",
    "mysqldb": "MySQLdb",
    "mariadbconnector": "mariadb",
    "pysqlite": "sqlite3",
}


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


def extra_for(parsed: URL, *, want_async: bool = False) -> str:
    """The extra that installs ``parsed``'s driver (``""``: none needed), for the hint of a
    missing driver: ``pip install 'ormsession[<extra>]'``."""
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    extra = DRIVER_EXTRAS.get(driver)
    if extra is not None:
        return extra
    if want_async:
        return {"postgresql": "async-postgres", "sqlite": "async-sqlite"}.get(
            backend, "async-mysql"
        )
    return SQL_EXTRAS.get(backend, "")


def check_sqlite_directory(parsed: URL) -> None:
    """Refuse a SQLite URL whose file lies in a directory that is not there. SQLite creates
    the file but not its directory, and fails as "unable to open database file" at the
    first statement, which reads as an outage: refused here as the configuration mistake it
    is, naming the directory. In-memory databases and URI filenames (``file:...``, whose
    path SQLite resolves itself) are not looked at."""
    if parsed.get_backend_name() != "sqlite":
        return
    database = parsed.database
    if database in (None, "", ":memory:") or database.startswith("file:"):
        return
    if str(parsed.query.get("uri", "")).lower() in ("true", "1"):
        return
    path = Path(database)
    # Resolved as the driver resolves it (pysqlite opens os.path.abspath(database)), so
    # "missing/../x.db" is "./x.db".
    directory = Path(os.path.abspath(database)).parent
    try:
        if directory.is_dir():
            return
        problem = "is not a directory" if directory.exists() else "does not exist"
    except OSError as exc:  # a parent directory this process may not search
        problem = f"cannot be looked at ({exc.strerror})"
    where = "" if path.is_absolute() else f", relative to the working directory {Path.cwd()}"
    raise ConfigurationError(
        f"the SQLite database {display_sql_url(parsed)} is in {str(path.parent)!r}{where}, "
        f"which {problem} (SQLite creates the file, not its directory): create it, or "
        "fix the path (sqlite:///relative/path.db, sqlite:////absolute/path.db)"
    )
