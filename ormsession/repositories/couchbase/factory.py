"""Building Couchbase repositories from URLs, configuration and ready clients (for the registry)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ormsession.errors import ConfigurationError
from ormsession.repositories.couchbase.cache import DEFAULT_CACHE_SIZE
from ormsession.repositories.couchbase.counters import DEFAULT_RESOLUTION
from ormsession.repositories.couchbase.repository import CouchbaseRepository
from ormsession.repositories.couchbase.urls import (
    DEFAULT_COLLECTION,
    DEFAULT_SCOPE,
    SCHEMES,
    CouchbaseTarget,
    parse_couchbase_url,
)
from ormsession.urls import scheme_of

if TYPE_CHECKING:
    from ormsession.config import Config
    from ormsession.repositories.couchbase.async_repository import AsyncCouchbaseRepository

__all__ = [
    "open_async_repository",
    "open_repository",
    "repository_for_async_client",
    "repository_for_client",
]


def _target(url: str, config: Config) -> CouchbaseTarget:
    return parse_couchbase_url(
        url, key_prefix=config.key_prefix, connect_timeout=config.connect_timeout
    )


def open_repository(url: str, config: Config) -> CouchbaseRepository:
    """Connect now (a wrong host, password, bucket or collection fails here)."""
    return CouchbaseRepository.connect(_target(url, config))


def open_async_repository(url: str, config: Config) -> AsyncCouchbaseRepository:
    """Connects on ``start()`` (awaited by ``configure_async``) or on first use."""
    from ormsession.repositories.couchbase.async_repository import AsyncCouchbaseRepository

    return AsyncCouchbaseRepository.from_target(_target(url, config))


# -- ready clients -------------------------------------------------------------------------
def _location(config: Config) -> CouchbaseTarget | None:
    """Bucket, scope, collection, key prefix and count options from ``config.url`` when
    it is a couchbase URL (its hosts and credentials are not used with a ready client)."""
    if scheme_of(config.url) not in SCHEMES:
        return None
    return parse_couchbase_url(
        config.url,
        key_prefix=config.key_prefix,
        connect_timeout=config.connect_timeout,
        require_credentials=False,
    )


def _keyspace(target: CouchbaseTarget | None) -> tuple[str, str]:
    if target is None:
        return DEFAULT_SCOPE, DEFAULT_COLLECTION
    return target.scope, target.collection


def _resolve(client: Any, target: CouchbaseTarget | None, kind: str) -> tuple[Any, str]:
    """``(collection, description)`` for a ready Cluster, Bucket, Scope or Collection;
    ``kind`` is its class role ("cluster", "bucket", "scope" or "collection")."""
    scope_name, collection_name = _keyspace(target)
    if kind == "collection":
        return client, f"couchbase collection {client.name!r} (application's client)"
    if kind == "scope":
        where = f"{client.bucket_name}/{client.name}.{collection_name}"
        return client.collection(collection_name), _app(where)
    if kind == "cluster":
        if target is None:
            raise ConfigurationError(
                "a Couchbase Cluster needs a bucket: also pass "
                "url='couchbase://host/<bucket>[?scope=...&collection=...]' (its hosts and "
                "credentials are not used), or pass a Bucket or Collection instead"
            )
        client = client.bucket(target.bucket)
    collection = client.scope(scope_name).collection(collection_name)
    return collection, _app(f"{client.name}/{scope_name}.{collection_name}")


def _app(where: str) -> str:
    return f"couchbase {where} (application's client)"


def _kind(client: Any, classes: dict[str, type]) -> str:
    for kind, cls in classes.items():
        if isinstance(client, cls):
            return kind
    raise ConfigurationError(
        f"cannot build a Couchbase session store from a {type(client).__qualname__}: pass a "
        "Cluster, Bucket, Scope or Collection"
    )


def repository_for_client(client: Any, config: Config) -> CouchbaseRepository:
    """Sessions in the app's own ``couchbase`` client; ``manager.close()`` never closes it."""
    if type(client).__module__.startswith("acouchbase"):
        raise ConfigurationError(
            "that is an acouchbase (asyncio) client: use ormsession.configure_async()"
        )
    from couchbase.bucket import Bucket
    from couchbase.cluster import Cluster
    from couchbase.collection import Collection
    from couchbase.exceptions import CouchbaseException
    from couchbase.scope import Scope

    from ormsession.repositories.couchbase.errors import wrap_couchbase_error

    classes = {"cluster": Cluster, "bucket": Bucket, "scope": Scope, "collection": Collection}
    target = _location(config)
    kind = _kind(client, classes)
    try:
        collection, description = _resolve(client, target, kind)
    except CouchbaseException as exc:  # the sync SDK opens a bucket on cluster.bucket()
        where = f"couchbase bucket {target.bucket if target else '?'} (application's client)"
        raise wrap_couchbase_error(exc, where=where, operation="connect") from exc
    return CouchbaseRepository(
        collection,
        key_prefix=target.key_prefix if target else config.key_prefix,
        count_resolution=target.count_resolution if target else DEFAULT_RESOLUTION,
        cas_cache_size=target.cas_cache_size if target else DEFAULT_CACHE_SIZE,
        description=description,
    )


def repository_for_async_client(client: Any, config: Config) -> AsyncCouchbaseRepository:
    """Sessions in the app's own ``acouchbase`` client; never closed by ormsession."""
    if not type(client).__module__.startswith("acouchbase"):
        raise ConfigurationError(
            "configure_async() needs an acouchbase client (acouchbase.cluster.Cluster, its "
            "Bucket, Scope or Collection); for a couchbase client use ormsession.configure()"
        )
    from acouchbase.bucket import AsyncBucket
    from acouchbase.cluster import AsyncCluster
    from acouchbase.collection import AsyncCollection
    from acouchbase.scope import AsyncScope

    from ormsession.repositories.couchbase.async_repository import AsyncCouchbaseRepository

    classes = {
        "cluster": AsyncCluster,
        "bucket": AsyncBucket,
        "scope": AsyncScope,
        "collection": AsyncCollection,
    }
    target = _location(config)
    collection, description = _resolve(client, target, _kind(client, classes))
    return AsyncCouchbaseRepository(
        collection,
        key_prefix=target.key_prefix if target else config.key_prefix,
        count_resolution=target.count_resolution if target else DEFAULT_RESOLUTION,
        cas_cache_size=target.cas_cache_size if target else DEFAULT_CACHE_SIZE,
        description=description,
    )


def open_store(url: str, config: Config, *, want_async: bool) -> Any:
    """The registry's factory for ``couchbase://`` and ``couchbases://`` URLs."""
    if want_async:
        return open_async_repository(url, config)
    return open_repository(url, config)


def store_for_client(client: Any, config: Config, *, want_async: bool) -> Any:
    """The registry's factory for a ready Couchbase ``Cluster`` or ``Collection``."""
    if want_async:
        return repository_for_async_client(client, config)
    return repository_for_client(client, config)
