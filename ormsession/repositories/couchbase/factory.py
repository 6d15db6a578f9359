"""The registry's factories for ``couchbase://`` and ``couchbases://`` URLs and for the
application's ready Couchbase clients."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ormsession.repositories.couchbase.clients import collection_of, connect
from ormsession.repositories.couchbase.flows import Context
from ormsession.repositories.couchbase.repository import CouchbaseRepository
from ormsession.repositories.couchbase.urls import (
    SCHEMES,
    CouchbaseTarget,
    parse_couchbase_url,
)
from ormsession.urls import scheme_of

if TYPE_CHECKING:
    from ormsession.config import Config

__all__ = ["open_store", "store_for_client"]


def open_store(url: str, config: Config, *, want_async: bool) -> Any:
    """The sync repository connects now and reads one key, so a wrong host, password,
    bucket or collection fails here; the async one does that in ``start()`` (awaited by
    ``configure_async``), since an ``acouchbase`` cluster belongs to the app's event loop."""
    target = _within_timeout(
        parse_couchbase_url(
            url, key_prefix=config.key_prefix, connect_timeout=config.store_timeout
        ),
        config.store_timeout,
    )
    context = _context(target)
    bounds = {
        "timeout": config.store_timeout,
        "kv_timeout": target.kv_timeout.total_seconds(),
    }
    if want_async:
        from ormsession.repositories.couchbase.async_repository import AsyncCouchbaseRepository

        return AsyncCouchbaseRepository(
            None, context, description=target.display, target=target, **bounds
        )
    cluster, collection = connect(target)
    repository = CouchbaseRepository(
        collection,
        context,
        description=target.display,
        cluster=cluster,
        secret=target.password,
        **bounds,
    )
    try:
        repository.start()
    except BaseException:
        repository.close()
        raise
    return repository


def store_for_client(client: Any, config: Config, *, want_async: bool) -> Any:
    """Sessions in the app's own Cluster, Bucket, Scope or Collection, which ormsession
    never closes. A couchbase ``config.url`` names the bucket, scope and collection in it
    and the store's options (its hosts and credentials are not used)."""
    target = None
    url = config.url.get_secret_value()
    if scheme_of(url) in SCHEMES:
        target = parse_couchbase_url(
            url,
            key_prefix=config.key_prefix,
            connect_timeout=config.store_timeout,
            require_credentials=False,
        )
    collection, description = collection_of(client, target, want_async=want_async)
    context = _context(target) if target else Context(config.key_prefix)
    # The app's cluster keeps its own kv_timeout (unknown here): every call then gets the
    # time its operation has left.
    if want_async:
        from ormsession.repositories.couchbase.async_repository import AsyncCouchbaseRepository

        return AsyncCouchbaseRepository(
            collection, context, description=description, timeout=config.store_timeout
        )
    return CouchbaseRepository(
        collection, context, description=description, timeout=config.store_timeout
    )


def _within_timeout(target: CouchbaseTarget, timeout: float) -> CouchbaseTarget:
    """``target`` with a key-value timeout no longer than one whole operation may take
    (the URL's ``kv_timeout``, or the SDK's 2.5 s, may be longer than ``store_timeout``)."""
    limit = timedelta(seconds=timeout)
    return replace(target, kv_timeout=limit) if target.kv_timeout > limit else target


def _context(target: CouchbaseTarget) -> Context:
    return Context(
        target.key_prefix,
        count_resolution=target.count_resolution,
        cache_size=target.cas_cache_size,
    )
