"""Stores chosen by URL scheme, through a lazy table that third-party stores can join.

Nothing here imports a driver: a store's module is imported only when a URL names it, so
``import ormsession`` works with no driver installed, and a missing driver is reported as
what to install. A store is a *factory*::

    def factory(url: str, config: Config, *, want_async: bool) -> Repository: ...

called with the URL and the frozen :class:`~ormsession.config.Config`. It returns a
:class:`~ormsession.repositories.base.SessionRepository` when ``want_async`` is false (for
:func:`ormsession.configure`) and an
:class:`~ormsession.repositories.base.AsyncSessionRepository` when it is true (for
:func:`ormsession.configure_async`), or raises :class:`~ormsession.errors.ConfigurationError`
for a twin it does not have. Schemes come
from :func:`register_store`, then the built-in table, then the ``ormsession.stores``
entry-point group of installed packages (name: the scheme, value: ``"module:factory"``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from ormsession.errors import ConfigurationError, MissingDriverError
from ormsession.repositories.base import AsyncSessionRepository, SessionRepository
from ormsession.urls import redact_url, scheme_of, slashes_problem

if TYPE_CHECKING:
    from ormsession.config import Config

__all__ = [
    "ENTRY_POINT_GROUP",
    "StoreFactory",
    "open_store",
    "register_store",
    "store_for_client",
    "supported_schemes",
]

#: A store factory (see the module docstring).
StoreFactory = Callable[..., SessionRepository | AsyncSessionRepository]

#: The entry-point group an installed package declares its stores in.
ENTRY_POINT_GROUP = "ormsession.stores"

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


@dataclass(frozen=True, slots=True)
class _Store:
    #: ``"module:attribute"``, imported on first use, or the factory itself.
    factory: str | StoreFactory
    #: What to ``pip install`` when the factory's module (or its driver) is missing.
    extra: str | None = None


_SQL = "ormsession.repositories.sql.factory:open_store"
_REDIS = "ormsession.repositories.redis.factory:open_store"
_COUCHBASE = "ormsession.repositories.couchbase.factory:open_store"

#: The built-in stores. SQL URLs match on the dialect (the part before '+', e.g.
#: postgresql+psycopg2); other schemes match exactly first.
_BUILTIN: dict[str, _Store] = {
    "memory": _Store("ormsession.repositories.memory:open_store"),
    "sqlite": _Store(_SQL),
    "postgresql": _Store(_SQL, "ormsession[postgres]"),
    "postgres": _Store(_SQL, "ormsession[postgres]"),  # refused with the right spelling
    "mysql": _Store(_SQL, "ormsession[mysql]"),
    "mariadb": _Store(_SQL, "ormsession[mysql]"),
    "redis": _Store(_REDIS, "ormsession[redis]"),
    "rediss": _Store(_REDIS, "ormsession[redis]"),
    "unix": _Store(_REDIS, "ormsession[redis]"),
    "redis+sentinel": _Store(_REDIS, "ormsession[redis]"),
    "redis+cluster": _Store(_REDIS, "ormsession[redis]"),
    "couchbase": _Store(_COUCHBASE, "ormsession[couchbase]"),
    "couchbases": _Store(_COUCHBASE, "ormsession[couchbase]"),
}
#: Driver modules of the built-in stores, and the extra that installs each.
_DRIVERS = {
    "psycopg2": "ormsession[postgres]",
    "pymysql": "ormsession[mysql]",
    "redis": "ormsession[redis]",
    "couchbase": "ormsession[couchbase]",
    "acouchbase": "ormsession[couchbase]",
    "asyncpg": "ormsession[async-postgres]",
    "asyncmy": "ormsession[async-mysql]",
    "aiosqlite": "ormsession[async-sqlite]",
    "greenlet": "ormsession[async]",
    "msgpack": "ormsession[msgpack]",
}

_registered: dict[str, _Store] = {}


def register_store(scheme: str, factory: str | StoreFactory, *, extra: str | None = None) -> None:
    """Make URLs of ``scheme`` open the store ``factory`` builds.

    ``factory``: ``"package.module:function"`` (imported when a URL first names the
    scheme) or the function itself; see the module docstring for its signature. ``extra``:
    what to ``pip install`` if importing it fails (``"ormsession-mongo"``, say). A
    registration replaces an earlier one, a built-in store's included.
    """
    if not isinstance(scheme, str) or not _SCHEME.fullmatch(scheme.lower()):
        raise ConfigurationError(f"{scheme!r} is not a URL scheme (letters, digits, + . -)")
    if isinstance(factory, str):
        if not _TARGET.fullmatch(factory):
            raise ConfigurationError(
                f"store factory {factory!r} must be 'package.module:function' or a callable"
            )
    elif not callable(factory):
        raise ConfigurationError(f"store factory must be a callable, not {type(factory)!r}")
    _registered[scheme.lower()] = _Store(factory, extra)


#: Built-in schemes that are only there to be refused with the right spelling: never
#: offered in the list of supported schemes.
_REFUSED = {"postgres"}


def supported_schemes() -> list[str]:
    """Every scheme a URL may have: built in, registered, or from installed packages."""
    return sorted({*(set(_BUILTIN) - _REFUSED), *_registered, *_entry_point_stores()})


def open_store(url: str, config: Config, *, want_async: bool) -> Any:
    """The repository for ``url``: a :class:`SessionRepository`, or with ``want_async``
    an :class:`AsyncSessionRepository`."""
    scheme = scheme_of(url)
    store = _lookup(scheme)
    if store is None:
        problem = slashes_problem(url, supported_schemes())
        if problem is not None:
            raise ConfigurationError(problem)
        raise ConfigurationError(
            f"no session store for the URL {redact_url(url)!r}: its scheme must be one of "
            + ", ".join(supported_schemes())
        )
    repository = _factory_of(store, scheme)(url, config, want_async=want_async)
    return _checked(repository, scheme, want_async=want_async)


def store_for_client(client: Any, config: Config, *, want_async: bool) -> Any:
    """A repository around a ready client object the app already has (Redis, Couchbase)."""
    package = type(client).__module__.split(".")[0]
    module_name = {
        "redis": "ormsession.repositories.redis.factory",
        "couchbase": "ormsession.repositories.couchbase.factory",
        "acouchbase": "ormsession.repositories.couchbase.factory",
    }.get(package)
    if module_name is None:
        raise ConfigurationError(
            f"cannot build a session store from a {type(client).__qualname__}: pass a redis-py "
            "client, a Couchbase Cluster/Collection, or engine=<SQLAlchemy Engine>"
        )
    repository = import_module(module_name).store_for_client(client, config, want_async=want_async)
    return _checked(repository, package, want_async=want_async)


def _lookup(scheme: str) -> _Store | None:
    """Registered stores, then built-in ones (each by the exact scheme, then by the part
    before ``+``: ``postgresql+psycopg2`` is ``postgresql``), then installed packages'."""
    base = scheme.split("+", 1)[0]
    for table in (_registered, _BUILTIN):
        store = table.get(scheme) or table.get(base)
        if store is not None:
            return store
    installed = _entry_point_stores()
    return installed.get(scheme) or installed.get(base)


_entry_points: dict[str, _Store] | None = None


def _entry_point_stores() -> dict[str, _Store]:
    """The ``ormsession.stores`` entry points of installed packages (read once)."""
    global _entry_points
    if _entry_points is None:
        found = entry_points(group=ENTRY_POINT_GROUP)
        _entry_points = {
            point.name.lower(): _Store(
                f"{point.module}:{point.attr}", point.dist.name if point.dist else None
            )
            for point in found
        }
    return _entry_points


def _factory_of(store: _Store, scheme: str) -> StoreFactory:
    if not isinstance(store.factory, str):
        return store.factory
    module_name, _, attribute = store.factory.partition(":")
    try:
        target: Any = import_module(module_name)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        hint = _DRIVERS.get(missing) or store.extra
        install = f": pip install '{hint}'" if hint else ""
        raise MissingDriverError(
            f"the store for {scheme}:// needs {missing or module_name}{install}"
        ) from exc
    for name in attribute.split("."):
        target = getattr(target, name, None)
    if not callable(target):
        raise ConfigurationError(f"the store for {scheme}:// names {store.factory!r}: not found")
    factory: StoreFactory = target
    return factory


def _checked(repository: Any, name: str, *, want_async: bool) -> Any:
    expected = AsyncSessionRepository if want_async else SessionRepository
    if not isinstance(repository, expected):
        raise ConfigurationError(
            f"the {name} store gave a {type(repository).__qualname__}, not an "
            f"{expected.__name__}"
            + (" (use configure_async() for asyncio stores)" if not want_async else "")
        )
    return repository
