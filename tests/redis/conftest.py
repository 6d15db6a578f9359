"""Fixtures for tests against real Redis servers.

* ``redis_url``: the machine's Redis on 127.0.0.1:6379. Shared with other users, so tests
  only touch keys under their ``redis_key_prefix`` and never flush it.
* ``sentinel_topology`` / ``cluster_topology``: started by the tests on free loopback
  ports, once per session.

A missing backend skips the tests, unless ORMSESSION_REQUIRE_BACKENDS=1 (CI), where a
silently skipped suite would hide a broken environment.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import NoReturn

import pytest
import redis

from tests.support.redis_servers import (
    ClusterTopology,
    SentinelTopology,
    delete_keys_with_prefix,
    redis_cli_path,
    redis_server_path,
)

LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
# Passwords of the session Sentinel topology: with auth on, tests also check that
# sentinel and data-node credentials reach the right connections.
SENTINEL_DATA_PASSWORD = "ormsession-data-pw"
SENTINEL_PASSWORD = "ormsession-sentinel-pw"


def _backend_missing(reason: str) -> NoReturn:
    if os.environ.get("ORMSESSION_REQUIRE_BACKENDS") == "1":
        pytest.fail(f"{reason} (ORMSESSION_REQUIRE_BACKENDS=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_binaries() -> None:
    """Skip (or fail) tests that start their own servers when Redis is not installed."""
    if redis_server_path() is None or redis_cli_path() is None:
        _backend_missing("redis-server/redis-cli not installed")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the plain Redis on 127.0.0.1:6379 (skip/fail if it does not answer)."""
    client = redis.Redis.from_url(LOCAL_REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        _backend_missing(f"no Redis answering at {LOCAL_REDIS_URL}: {exc}")
    finally:
        client.close()
    return LOCAL_REDIS_URL


@pytest.fixture
def redis_key_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix for one test; every key under it is deleted afterwards."""
    prefix = f"ormsession-test-{uuid.uuid4().hex}:"
    yield prefix
    with redis.Redis.from_url(redis_url, socket_timeout=5) as client:
        delete_keys_with_prefix(client, prefix)


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
def cluster_topology(redis_binaries: None) -> Iterator[ClusterTopology]:
    """A three-master Redis Cluster without replicas or password."""
    with ClusterTopology(masters=3) as topology:
        yield topology
