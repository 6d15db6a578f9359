"""ormsession's configuration, read from a Django project's settings.

Django owns the cookie and the session lifetime: its ``SessionMiddleware`` writes the
cookie from ``SESSION_COOKIE_*``, and ``SESSION_COOKIE_AGE`` (or a session's own
``set_expiry()``) is how long a session lives. So the ormsession options that would say
the same thing a second time are refused here, naming the Django setting to use instead.
Every other option is an ``ORMSESSION_<OPTION>`` setting (``ORMSESSION_URL``,
``ORMSESSION_ENCRYPT``, ...), on top of ``ORMSESSION_*`` environment variables.

The store: ``ORMSESSION_URL``, or ``ORMSESSION_DATABASE = "default"`` for the database of
one of the project's ``DATABASES`` aliases (ormsession's own table in it, reached through
SQLAlchemy with the same host, name and credentials).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ormsession.config import Config
from ormsession.errors import ConfigurationError

__all__ = [
    "DJANGO_OWNS",
    "async_url_of",
    "config_from_settings",
    "database_url",
    "url_for_database",
]

#: ormsession options whose job a Django setting does: option -> that setting.
DJANGO_OWNS = {
    "cookie_name": "SESSION_COOKIE_NAME",
    "cookie_path": "SESSION_COOKIE_PATH",
    "cookie_domain": "SESSION_COOKIE_DOMAIN",
    "cookie_secure": "SESSION_COOKIE_SECURE",
    "cookie_httponly": "SESSION_COOKIE_HTTPONLY",
    "cookie_samesite": "SESSION_COOKIE_SAMESITE",
    "cookie_lifetime": "SESSION_COOKIE_AGE",
    "cookie_host_prefix": "SESSION_COOKIE_NAME",
    "cookie_partitioned": "SESSION_COOKIE_*",
    "set_cookie": "SESSION_COOKIE_*",
    "idle_timeout": "SESSION_COOKIE_AGE",
    "id_header": "SESSION_COOKIE_NAME",
    "id_query_param": "SESSION_COOKIE_NAME",
    "trust_forwarded_proto": "SESSION_COOKIE_SECURE",
}

#: Django's database engines, as SQLAlchemy dialects. No driver is named: ormsession then
#: picks the installed one for each side (psycopg2 or psycopg; asyncpg for asyncio).
_DIALECTS = {
    "django.db.backends.postgresql": "postgresql",
    "django.db.backends.mysql": "mysql",
    "django.db.backends.sqlite3": "sqlite",
}

#: Drivers with no asyncio side: the async manager takes the dialect's default instead.
_SYNC_ONLY_DRIVERS = {"psycopg2", "pymysql", "mysqldb", "mariadbconnector", "pysqlite"}


def config_from_settings() -> Config:
    """The configuration the Django project's settings describe."""
    from ormsession.settings import load_config

    options = _ormsession_settings()
    alias = options.pop("database", None)
    if alias is not None:
        if "url" in options:
            raise ImproperlyConfigured("set ORMSESSION_URL or ORMSESSION_DATABASE, not both")
        options["url"] = database_url(str(alias))
    # Django's middleware writes the cookie: the manager's Set-Cookie would go unused.
    options["set_cookie"] = False
    try:
        return load_config(None, **options)
    except ConfigurationError as exc:
        raise ImproperlyConfigured(f"ormsession: {exc}") from exc


def _ormsession_settings() -> dict[str, Any]:
    from ormsession.settings import check_variable_names

    # A misspelt ORMSESSION_URLL would otherwise be ignored, and the sessions sent to the
    # default SQLite file: refused, naming the closest option, as in the environment.
    given = [
        name
        for name in dir(settings)
        if name.startswith("ORMSESSION_") and name != "ORMSESSION_DATABASE"
        if hasattr(settings, name)
    ]
    try:
        check_variable_names(given, where="Django's settings")
    except ConfigurationError as exc:
        raise ImproperlyConfigured(f"ormsession: {exc}") from exc
    options: dict[str, Any] = {}
    for name in [*Config.model_fields, "database"]:
        setting = f"ORMSESSION_{name.upper()}"
        if not hasattr(settings, setting):
            continue
        if name in DJANGO_OWNS:
            raise ImproperlyConfigured(
                f"{setting}: Django's session middleware writes the cookie and sets the "
                f"lifetime; use {DJANGO_OWNS[name]} instead"
            )
        options[name] = getattr(settings, setting)
    return options


def database_url(alias: str) -> str:
    """A SQLAlchemy URL for the database of Django's ``DATABASES[alias]``, as Django's
    connection handler holds it now (during tests: the test database)."""
    from django.db import connections

    if alias not in connections.settings:
        raise ImproperlyConfigured(f"ORMSESSION_DATABASE: no database {alias!r} in DATABASES")
    return url_for_database(connections.settings[alias])


def url_for_database(database: Mapping[str, Any]) -> str:
    """A SQLAlchemy URL for a Django ``DATABASES`` entry."""
    from sqlalchemy.engine import URL

    dialect = _DIALECTS.get(str(database.get("ENGINE", "")))
    if dialect is None:
        raise ImproperlyConfigured(
            f"ORMSESSION_DATABASE: ormsession stores sessions in PostgreSQL, MySQL/MariaDB "
            f"or SQLite, not {database.get('ENGINE')!r}; set ORMSESSION_URL instead"
        )
    name = str(database.get("NAME") or "")
    if dialect == "sqlite":
        return _sqlite_url(name)
    port = database.get("PORT")
    url = URL.create(
        dialect,
        username=database.get("USER") or None,
        password=database.get("PASSWORD") or None,
        host=database.get("HOST") or None,
        port=int(port) if port else None,
        database=name or None,
    )
    return url.render_as_string(hide_password=False)


def _sqlite_url(name: str) -> str:
    if name.startswith("file:") and "mode=memory" in name:
        # A shared in-memory database (Django's test database on SQLite): the same one,
        # as long as Django holds a connection to it.
        return f"sqlite:///{name}{'&' if '?' in name else '?'}uri=true"
    if not name or name == ":memory:" or name.startswith("file:"):
        raise ImproperlyConfigured(
            "ORMSESSION_DATABASE: a private in-memory SQLite database is one connection's "
            "own; sessions need a file or a shared in-memory database (or ORMSESSION_URL)"
        )
    return f"sqlite:///{name}"


def async_url_of(url: str) -> str:
    """The URL the asyncio manager opens: the same store, through an asyncio driver
    (``postgresql+psycopg2://`` becomes ``postgresql://``, which ormsession's asyncio side
    reads as asyncpg, or psycopg's asyncio side)."""
    head, sep, rest = url.partition("://")
    dialect, plus, driver = head.partition("+")
    if plus and driver in _SYNC_ONLY_DRIVERS:
        return f"{dialect}{sep}{rest}"
    return url
