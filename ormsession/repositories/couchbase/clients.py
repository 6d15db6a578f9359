"""Couchbase SDK clients: the cluster ormsession opens from a parsed URL, and the collection
inside a client the application hands in (sync ``couchbase`` or asyncio ``acouchbase``).

``acouchbase`` is imported only by the asyncio functions, so a sync app never loads it.
SDK errors come out as ormsession's (:mod:`~.errors`), without the password.
"""

from __future__ import annotations

from typing import Any

from couchbase.auth import PasswordAuthenticator
from couchbase.bucket import Bucket
from couchbase.cluster import Cluster
from couchbase.collection import Collection
from couchbase.exceptions import CouchbaseException
from couchbase.options import ClusterOptions, ClusterTimeoutOptions
from couchbase.scope import Scope

from ormsession.errors import ConfigurationError, StoreError
from ormsession.repositories.couchbase.errors import wrap_couchbase_error
from ormsession.repositories.couchbase.urls import (
    DEFAULT_COLLECTION,
    DEFAULT_SCOPE,
    CouchbaseTarget,
)

__all__ = ["cluster_options", "collection_of", "connect", "connect_async"]


def cluster_options(target: CouchbaseTarget) -> Any:
    """``ClusterOptions`` for a cluster ormsession opens itself.

    ``bootstrap_timeout`` bounds connecting *and* authenticating, so a wrong host, port or
    password fails within ``connect_timeout`` rather than the SDK's default 10 seconds.
    """
    if target.username is None or target.password is None:
        raise ConfigurationError(f"Couchbase needs a username and password ({target.display})")
    timeouts = ClusterTimeoutOptions(
        kv_timeout=target.kv_timeout,
        connect_timeout=target.connect_timeout,
        bootstrap_timeout=target.connect_timeout,
    )
    authenticator = PasswordAuthenticator(
        target.username, target.password, cert_path=target.trust_store_path
    )
    return ClusterOptions(authenticator, timeout_options=timeouts)


def connect(target: CouchbaseTarget) -> tuple[Any, Any]:
    """``(cluster, collection)``: the cluster ``target`` names, opened with its bucket (the
    sync SDK opens a bucket on ``cluster.bucket()``: a wrong name fails here)."""
    try:
        cluster = Cluster(target.connection_string, cluster_options(target))
        try:
            bucket = cluster.bucket(target.bucket)
        except BaseException:
            cluster.close()
            raise
    except CouchbaseException as exc:
        raise _wrap(exc, target) from exc
    return cluster, bucket.scope(target.scope).collection(target.collection)


async def connect_async(target: CouchbaseTarget) -> tuple[Any, Any]:
    """:func:`connect` with ``acouchbase``, on the running event loop (an ``acouchbase``
    cluster belongs to the loop it was created on)."""
    from acouchbase.cluster import Cluster as AsyncCluster

    try:
        cluster = await AsyncCluster.connect(target.connection_string, cluster_options(target))
        try:
            bucket = cluster.bucket(target.bucket)
            await bucket.on_connect()
        except BaseException:
            await cluster.close()
            raise
    except CouchbaseException as exc:
        raise _wrap(exc, target) from exc
    return cluster, bucket.scope(target.scope).collection(target.collection)


def _wrap(exc: CouchbaseException, target: CouchbaseTarget) -> StoreError:
    return wrap_couchbase_error(
        exc, where=target.display, operation="connect", secret=target.password
    )


# -- the application's clients ---------------------------------------------------------------
def collection_of(
    client: Any, target: CouchbaseTarget | None, *, want_async: bool
) -> tuple[Any, str]:
    """``(collection, description)`` for the app's ready Cluster, Bucket, Scope or
    Collection; ``target`` (from the configured URL, if any) names the bucket, scope and
    collection inside it."""
    is_async = type(client).__module__.startswith("acouchbase")
    if is_async and not want_async:
        raise ConfigurationError(
            "that is an acouchbase (asyncio) client: use ormsession.configure_async()"
        )
    if want_async and not is_async:
        raise ConfigurationError(
            "configure_async() needs an acouchbase client (acouchbase.cluster.Cluster, its "
            "Bucket, Scope or Collection); for a couchbase client use ormsession.configure()"
        )
    kind = _kind(client, _async_classes() if want_async else _SYNC_CLASSES)
    try:
        return _resolve(client, target, kind)
    except CouchbaseException as exc:  # the sync SDK opens a bucket on cluster.bucket()
        where = f"couchbase bucket {target.bucket if target else '?'} (application's client)"
        raise wrap_couchbase_error(exc, where=where, operation="connect") from exc


_SYNC_CLASSES = {"cluster": Cluster, "bucket": Bucket, "scope": Scope, "collection": Collection}


def _async_classes() -> dict[str, type]:
    from acouchbase.bucket import AsyncBucket
    from acouchbase.cluster import AsyncCluster
    from acouchbase.collection import AsyncCollection
    from acouchbase.scope import AsyncScope

    return {
        "cluster": AsyncCluster,
        "bucket": AsyncBucket,
        "scope": AsyncScope,
        "collection": AsyncCollection,
    }


def _kind(client: Any, classes: dict[str, type]) -> str:
    for kind, cls in classes.items():
        if isinstance(client, cls):
            return kind
    raise ConfigurationError(
        f"cannot build a Couchbase session store from a {type(client).__qualname__}: pass a "
        "Cluster, Bucket, Scope or Collection"
    )


def _resolve(client: Any, target: CouchbaseTarget | None, kind: str) -> tuple[Any, str]:
    """``(collection, description)`` inside ``client``, whose class role is ``kind``."""
    scope_name = target.scope if target else DEFAULT_SCOPE
    collection_name = target.collection if target else DEFAULT_COLLECTION
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
