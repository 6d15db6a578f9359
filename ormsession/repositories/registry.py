"""Stores chosen by URL scheme, through a lazy table.

Nothing here imports a driver: a store's module is imported only when a URL names it, so
``import ormsession`` works with no driver installed, and a missing driver is reported as
the extra to install.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ormsession.errors import ConfigurationError, MissingDriverError
from ormsession.urls import redact_url, scheme_of

if TYPE_CHECKING:
    from ormsession.repositories.base import AsyncSessionRepository, SessionRepository
    from ormsession.settings import OrmsessionSettings

__all__ = ["open_async_repository", "open_repository", "supported_schemes"]

_SQL = "ormsession.repositories.sql.factory"
_REDIS = "ormsession.repositories.redis.factory"
_COUCHBASE = "ormsession.repositories.couchbase.factory"

#: scheme -> (module, extra that installs its driver). SQL URLs match on the dialect
#: (the part before '+', e.g. postgresql+psycopg2); other schemes match exactly first.
_STORES: dict[str, tuple[str, str]] = {
    "memory": ("ormsession.repositories.memory", ""),
    "sqlite": (_SQL, ""),
    "postgresql": (_SQL, "postgres"),
    "postgres": (_SQL, "postgres"),  # refused by the SQL store with the right spelling
    "mysql": (_SQL, "mysql"),
    "mariadb": (_SQL, "mysql"),
    "redis": (_REDIS, "redis"),
    "rediss": (_REDIS, "redis"),
    "unix": (_REDIS, "redis"),
    "redis+sentinel": (_REDIS, "redis"),
    "redis+cluster": (_REDIS, "redis"),
    "couchbase": (_COUCHBASE, "couchbase"),
    "couchbases": (_COUCHBASE, "couchbase"),
}
#: Driver import names that, when missing, mean "install this extra".
_DRIVERS = {
    "psycopg2": "postgres",
    "pymysql": "mysql",
    "redis": "redis",
    "couchbase": "couchbase",
    "acouchbase": "couchbase",
    "asyncpg": "async-postgres",
    "asyncmy": "async-mysql",
    "aiosqlite": "async-sqlite",
    "greenlet": "async",
    "msgpack": "msgpack",
}


def supported_schemes() -> list[str]:
    return sorted(_STORES)


def _store_module(url: str) -> Any:
    scheme = scheme_of(url)
    entry = _STORES.get(scheme) or _STORES.get(scheme.split("+", 1)[0])
    if entry is None:
        raise ConfigurationError(
            f"no session store for the URL {redact_url(url)!r}: its scheme must be one of "
            + ", ".join(supported_schemes())
        )
    module_name, extra = entry
    try:
        return import_module(module_name)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        hint = _DRIVERS.get(missing, extra)
        raise MissingDriverError(
            f"the store for {scheme}:// needs {missing or 'a driver'}: "
            f"pip install 'ormsession[{hint}]'"
        ) from exc


def open_repository(url: str, settings: OrmsessionSettings) -> SessionRepository:
    """A synchronous repository for ``url``, configured from ``settings``."""
    repository: SessionRepository = _store_module(url).open_repository(url, settings)
    return repository


def open_async_repository(url: str, settings: OrmsessionSettings) -> AsyncSessionRepository:
    """An asyncio repository for ``url``, configured from ``settings``."""
    module = _store_module(url)
    if not hasattr(module, "open_async_repository"):
        raise ConfigurationError(f"the {scheme_of(url)}:// store has no asyncio version")
    repository: AsyncSessionRepository = module.open_async_repository(url, settings)
    return repository


def repository_for_client(client: Any, settings: OrmsessionSettings, *, want_async: bool) -> Any:
    """A repository around a ready client object the app already has (Redis, Couchbase)."""
    package = type(client).__module__.split(".")[0]
    module_name = {"redis": _REDIS, "couchbase": _COUCHBASE, "acouchbase": _COUCHBASE}.get(package)
    if module_name is None:
        raise ConfigurationError(
            f"cannot build a session store from a {type(client).__qualname__}: pass a redis-py "
            "client, a Couchbase Cluster/Collection, or engine=<SQLAlchemy Engine>"
        )
    factory = "repository_for_async_client" if want_async else "repository_for_client"
    return getattr(import_module(module_name), factory)(client, settings)
