"""What the tests of a user's sessions (issue 28) share: which stores keep a user index yet.

The core and the memory store came first; each other store gains its index on a branch of
its own. A test of the app-facing side runs on the memory store now and on the others as
soon as their branch is merged: :func:`needs_user_index` skips it, naming the missing
piece, while the store's repository still lacks the index's methods (it cannot even be
built then), and stops skipping by itself once they are there.
"""

from __future__ import annotations

from importlib import import_module

import pytest

#: store name -> the modules and classes whose user index the store needs (sync, async).
_REPOSITORIES = {
    "sql": (
        ("ormsession.repositories.sql.repository", "SqlRepository"),
        ("ormsession.repositories.sql.async_repository", "AsyncSqlRepository"),
    ),
    "redis": (
        ("ormsession.repositories.redis.repository", "RedisRepository"),
        ("ormsession.repositories.redis.async_repository", "AsyncRedisRepository"),
    ),
    "couchbase": (
        ("ormsession.repositories.couchbase.repository", "CouchbaseRepository"),
        ("ormsession.repositories.couchbase.async_repository", "AsyncCouchbaseRepository"),
    ),
}
_FAMILY = {
    "sqlite": "sql",
    "postgresql": "sql",
    "mysql": "sql",
    "redis": "redis",
    "sentinel": "redis",
    "cluster": "redis",
    "valkey": "redis",
    "couchbase": "couchbase",
}


def user_index_missing(store: str) -> str | None:
    """Why ``store`` (a name of ``tests.support.stores.STORE_TARGETS``, or ``memory``)
    cannot keep users' sessions on this branch, or None when it can."""
    family = _FAMILY.get(store)
    if family is None:
        return None
    for module, name in _REPOSITORIES[family]:
        missing = getattr(import_module(module), name).__abstractmethods__
        if missing:
            return (
                f"the {family.upper() if family == 'sql' else family.title()} store has no "
                f"user index on this branch yet ({', '.join(sorted(missing))}: branch "
                f"users-{family})"
            )
    return None


def needs_user_index(store: str) -> None:
    """Skip the running test while ``store`` has no user index (see the module docstring)."""
    reason = user_index_missing(store)
    if reason is not None:
        pytest.skip(reason)


def store_of_url(url: str) -> str:
    """The store name of a test's URL (``sqlite+aiosqlite:///x`` -> ``sqlite``)."""
    scheme = url.partition(":")[0].partition("+")[0]
    return {"postgres": "postgresql", "mariadb": "mysql"}.get(scheme, scheme)
