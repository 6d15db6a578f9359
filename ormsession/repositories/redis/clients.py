"""redis-py clients built from a parsed URL and the configuration (sync and asyncio).

Defaults chosen here, and why:

- socket and connect timeouts default to ``config.store_timeout`` (redis-py's default
  is to wait forever on a silent server);
- at most ``retries`` (default 1) immediate retries, and only on connection errors: a
  stale pooled connection after a restart is retried at once, while a timeout is not
  retried, so a dead store fails within the timeout (redis-py 8 would otherwise retry
  three times with exponential backoff, for seconds, even after a wrong password);
- replies are never decoded (session data is bytes), whatever the app's clients do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from redis import cluster, sentinel
from redis.backoff import NoBackoff
from redis.client import NEVER_DECODE
from redis.retry import Retry

from ormsession.repositories.redis.urls import RedisUrl

if TYPE_CHECKING:
    from ormsession.config import Config


def _any(constructor: Any) -> Any:
    """redis-py leaves some constructors unannotated: call them as Any."""
    return constructor


__all__ = [
    "RAW",
    "OwnedClient",
    "async_client_from_url",
    "client_from_url",
    "describe_client",
    "is_async_client",
    "is_cluster_client",
]


#: Options for every command the repositories send: session values are bytes, so replies are
#: never decoded, whatever a ready client's ``decode_responses``.
RAW = {NEVER_DECODE: True}


@dataclass
class OwnedClient:
    """A client ormsession created, and everything to close with it: for Sentinel, the
    clients that talk to the sentinels (closed one by one: ``Sentinel.close()`` is recent)."""

    client: Any
    extras: list[Any] = field(default_factory=list)


def _node_kwargs(url: RedisUrl, config: Config) -> dict[str, Any]:
    """Connection options shared by every mode (data nodes only)."""
    timeout = config.store_timeout
    kwargs: dict[str, Any] = {
        "username": url.username,
        "password": url.password,
        "socket_timeout": url.socket_timeout or timeout,
        "socket_connect_timeout": url.socket_connect_timeout or timeout,
        "health_check_interval": url.health_check_interval,
        "client_name": url.client_name,
    }
    max_connections = url.max_connections or config.pool_size
    if max_connections:
        kwargs["max_connections"] = max_connections
    if url.tls:
        kwargs["ssl"] = True
        if url.ssl_cert_reqs:
            kwargs["ssl_cert_reqs"] = url.ssl_cert_reqs
        if url.ssl_ca_certs:
            kwargs["ssl_ca_certs"] = url.ssl_ca_certs
    return kwargs


def _sentinel_kwargs(url: RedisUrl, node: dict[str, Any]) -> dict[str, Any]:
    """Options for the connections to the sentinels themselves."""
    shared = ("socket_timeout", "socket_connect_timeout", "retry", "ssl", "ssl_cert_reqs")
    kwargs: dict[str, Any] = {key: node[key] for key in shared if key in node}
    if url.ssl_ca_certs:
        kwargs["ssl_ca_certs"] = url.ssl_ca_certs
    kwargs["username"] = url.sentinel_username
    kwargs["password"] = url.sentinel_password
    return kwargs


def client_from_url(url: RedisUrl, config: Config) -> OwnedClient:
    """A synchronous client for ``url`` (constructing a Cluster client contacts it)."""
    node = _node_kwargs(url, config)
    node["retry"] = Retry(NoBackoff(), url.retries, supported_errors=(redis.ConnectionError,))
    if url.mode == "cluster":
        cluster_retry = node.pop("retry")
        nodes = [_any(cluster.ClusterNode)(host, port) for host, port in url.hosts]
        return OwnedClient(cluster.RedisCluster(startup_nodes=nodes, retry=cluster_retry, **node))
    if url.mode == "sentinel":
        sentinels = _any(sentinel.Sentinel)(
            list(url.hosts), sentinel_kwargs=_sentinel_kwargs(url, node)
        )
        master = sentinels.master_for(url.service_name, db=url.db, **node)
        return OwnedClient(master, list(sentinels.sentinels))
    if url.unix_path is not None:
        return OwnedClient(redis.Redis(unix_socket_path=url.unix_path, db=url.db, **node))
    host, port = url.hosts[0]
    return OwnedClient(redis.Redis(host=host, port=port, db=url.db, **node))


def async_client_from_url(url: RedisUrl, config: Config) -> OwnedClient:
    """An asyncio client for ``url``; it connects on first use."""
    from redis.asyncio import Redis as AsyncRedis
    from redis.asyncio import sentinel as async_sentinel
    from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
    from redis.asyncio.retry import Retry as AsyncRetry

    node = _node_kwargs(url, config)
    node["retry"] = AsyncRetry(NoBackoff(), url.retries, supported_errors=(redis.ConnectionError,))
    if url.mode == "cluster":
        cluster_retry = node.pop("retry")
        nodes = [AsyncClusterNode(host, port) for host, port in url.hosts]
        return OwnedClient(AsyncRedisCluster(startup_nodes=nodes, retry=cluster_retry, **node))
    if url.mode == "sentinel":
        sentinels = _any(async_sentinel.Sentinel)(
            list(url.hosts), sentinel_kwargs=_sentinel_kwargs(url, node)
        )
        master = sentinels.master_for(url.service_name, db=url.db, **node)
        return OwnedClient(master, list(sentinels.sentinels))
    if url.unix_path is not None:
        return OwnedClient(AsyncRedis(unix_socket_path=url.unix_path, db=url.db, **node))
    host, port = url.hosts[0]
    return OwnedClient(AsyncRedis(host=host, port=port, db=url.db, **node))


def is_cluster_client(client: Any) -> bool:
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

    return isinstance(client, cluster.RedisCluster | AsyncRedisCluster)


def is_async_client(client: Any) -> bool:
    from redis.asyncio import Redis as AsyncRedis
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

    return isinstance(client, AsyncRedis | AsyncRedisCluster)


def describe_client(client: Any) -> str:
    """Where an app-provided client points, for messages (never its password)."""
    pool = getattr(client, "connection_pool", None)
    kwargs: dict[str, Any] = getattr(pool, "connection_kwargs", {}) or {}
    service = getattr(pool, "service_name", None)
    if service is not None:
        return f"redis+sentinel:///{service} (app client)"
    if kwargs.get("path"):
        return f"unix://{kwargs['path']} (app client)"
    if "host" in kwargs:
        host, port, db = kwargs["host"], kwargs.get("port", 6379), kwargs.get("db", 0)
        return f"redis://{host}:{port}/{db} (app client)"
    if is_cluster_client(client):
        return "redis+cluster:// (app client)"
    return f"{type(client).__name__} (app client)"
