"""A ready Cluster, Bucket, Scope or Collection from the app: used as given, never closed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from acouchbase.cluster import Cluster as AsyncCluster
from couchbase.auth import PasswordAuthenticator
from couchbase.cluster import Cluster
from couchbase.options import ClusterOptions, ClusterTimeoutOptions

import ormsession
from ormsession.errors import ConfigurationError, StoreUnavailableError
from ormsession.ids import storage_key
from tests.manager.test_lifecycle import cookie_id
from tests.support.couchbase_fixtures import (
    COUCHBASE_BUCKET,
    COUCHBASE_PASSWORD,
    COUCHBASE_USER,
    unique_prefix,
)
from tests.support.couchbase_server import CouchbaseTestServer


def options() -> ClusterOptions:
    timeouts = ClusterTimeoutOptions(
        kv_timeout=timedelta(seconds=2), connect_timeout=timedelta(seconds=2)
    )
    return ClusterOptions(
        PasswordAuthenticator(COUCHBASE_USER, COUCHBASE_PASSWORD), timeout_options=timeouts
    )


@pytest.fixture
def cluster(couchbase_server: CouchbaseTestServer) -> Iterator[Cluster]:
    cluster = Cluster(couchbase_server.connection_string, options())
    yield cluster
    cluster.close()


def save_one(manager: Any) -> str:
    session = manager.open(None)
    session["user"] = "carol"
    return cookie_id(manager.save(session))


def clients(cluster: Cluster) -> dict[str, Any]:
    bucket = cluster.bucket(COUCHBASE_BUCKET)
    return {
        "cluster": cluster,
        "bucket": bucket,
        "scope": bucket.scope("sessions"),
        "collection": bucket.scope("sessions").collection("items"),
    }


@pytest.mark.parametrize("kind", ["cluster", "bucket", "scope", "collection"])
def test_a_ready_sync_client_is_used_and_not_closed(
    couchbase_server: CouchbaseTestServer, cluster: Cluster, kind: str
) -> None:
    prefix = unique_prefix()
    client = clients(cluster)[kind]
    # The URL names only the keyspace for a Cluster/Bucket/Scope; no hosts or password.
    url = "couchbase://ignored/sessions?scope=sessions&collection=items"
    manager = ormsession.configure(client=client, url=url, key_prefix=prefix)
    sid = save_one(manager)
    assert dict(manager.open(sid)) == {"user": "carol"}
    manager.close()
    # The app's cluster still works after the manager is closed.
    items = cluster.bucket(COUCHBASE_BUCKET).scope("sessions").collection("items")
    assert items.exists(prefix + storage_key(sid)).exists
    assert COUCHBASE_PASSWORD not in repr(manager.repository)


def test_a_ready_collection_needs_no_url(cluster: Cluster) -> None:
    prefix = unique_prefix()
    collection = cluster.bucket(COUCHBASE_BUCKET).default_collection()
    with ormsession.configure(client=collection, key_prefix=prefix) as manager:
        sid = save_one(manager)
        assert manager.count() == 1
    assert collection.exists(prefix + storage_key(sid)).exists


def test_a_cluster_without_a_bucket_is_a_configuration_error(cluster: Cluster) -> None:
    with pytest.raises(ConfigurationError, match="needs a bucket"):
        ormsession.configure(client=cluster)


def test_a_cluster_with_an_unknown_bucket_is_a_store_error(cluster: Cluster) -> None:
    with pytest.raises(StoreUnavailableError, match="no such bucket"):
        ormsession.configure(client=cluster, url="couchbase://ignored/no-such-bucket")


def test_a_sync_client_for_configure_async_is_refused(cluster: Cluster) -> None:
    async def scenario() -> None:
        await ormsession.configure_async(client=cluster.bucket(COUCHBASE_BUCKET))

    with pytest.raises(ConfigurationError, match="needs an acouchbase client"):
        asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["cluster", "collection"])
def test_a_ready_async_client_is_used_and_not_closed(
    couchbase_server: CouchbaseTestServer, kind: str
) -> None:
    prefix = unique_prefix()

    async def scenario() -> None:
        cluster = await AsyncCluster.connect(couchbase_server.connection_string, options())
        try:
            bucket = cluster.bucket(COUCHBASE_BUCKET)
            await bucket.on_connect()
            client = cluster if kind == "cluster" else bucket.default_collection()
            manager = await ormsession.configure_async(
                client=client, url="couchbase://ignored/sessions", key_prefix=prefix
            )
            session = await manager.open(None)
            session["n"] = 1
            sid = cookie_id(await manager.save(session))
            assert dict(await manager.open(sid)) == {"n": 1}
            await manager.close()
            result = await bucket.default_collection().exists(prefix + storage_key(sid))
            assert result.exists, "the app's cluster must still work"
            with pytest.raises(ConfigurationError, match="acouchbase"):
                ormsession.configure(client=client)
        finally:
            await cluster.close()

    asyncio.run(scenario())
