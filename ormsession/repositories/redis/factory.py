"""The registry's entry points for ``redis://``, ``rediss://``, ``unix://``,
``redis+sentinel://`` and ``redis+cluster://`` URLs, and for ready redis-py clients."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ormsession.errors import ConfigurationError
from ormsession.repositories.redis.async_repository import AsyncRedisRepository
from ormsession.repositories.redis.base import DEFAULT_WAIT_TIMEOUT_MS, validate_key_prefix
from ormsession.repositories.redis.clients import (
    async_client_from_url,
    client_from_url,
    is_async_client,
)
from ormsession.repositories.redis.errors import REDIS_ERRORS, wrap_redis_error
from ormsession.repositories.redis.repository import RedisRepository
from ormsession.repositories.redis.urls import RedisUrl, parse_redis_url

if TYPE_CHECKING:
    from ormsession.config import Config

__all__ = ["open_store", "store_for_client"]


def _store_options(url: RedisUrl, config: Config) -> dict[str, Any]:
    """Repository options from the URL (which wins) and the configuration, validated up front
    so a bad prefix or WAIT setting fails at configuration time, before any I/O."""
    prefix = validate_key_prefix(url.key_prefix or config.key_prefix)
    wait_timeout_ms = url.wait_timeout_ms or DEFAULT_WAIT_TIMEOUT_MS
    socket_timeout = url.socket_timeout or config.store_timeout
    if url.wait_replicas and wait_timeout_ms >= socket_timeout * 1000:
        # WAIT would still be blocking when the socket gives up on it.
        raise ConfigurationError(
            f"invalid Redis URL {url.redacted!r}: wait_timeout_ms must be shorter than "
            "socket_timeout"
        )
    return {
        "key_prefix": prefix,
        "wait_replicas": url.wait_replicas,
        "wait_timeout_ms": wait_timeout_ms,
        "count_resolution": url.count_resolution,
        "where": url.redacted,
        "secrets": url.secrets,
    }


def open_store(
    url: str, config: Config, *, want_async: bool
) -> RedisRepository | AsyncRedisRepository:
    """The registry's factory for ``redis://``-family URLs: a repository owning the clients
    it builds (``close()`` closes them)."""
    parsed = parse_redis_url(url)
    options = _store_options(parsed, config)
    if want_async:
        owned = async_client_from_url(parsed, config)  # connects on first use
        return AsyncRedisRepository(owned.client, owned=[owned.client, *owned.extras], **options)
    try:
        owned = client_from_url(parsed, config)
    except REDIS_ERRORS as exc:  # a Cluster client contacts its nodes on construction
        raise wrap_redis_error(
            exc, operation="start-up", where=parsed.redacted, secrets=parsed.secrets
        ) from exc
    return RedisRepository(owned.client, owned=[owned.client, *owned.extras], **options)


def store_for_client(
    client: Any, config: Config, *, want_async: bool
) -> RedisRepository | AsyncRedisRepository:
    """The registry's factory for a ready ``redis.Redis`` / ``redis.cluster.RedisCluster`` /
    Sentinel ``master_for`` client, or (``want_async``) their ``redis.asyncio`` twins. The
    app keeps owning it: ``close()`` leaves it open."""
    _check_client(client, want_async=want_async)
    twin = AsyncRedisRepository if want_async else RedisRepository
    return twin(client, key_prefix=config.key_prefix)


def _check_client(client: Any, *, want_async: bool) -> None:
    from redis.asyncio.sentinel import Sentinel as AsyncSentinel
    from redis.sentinel import Sentinel

    if isinstance(client, Sentinel | AsyncSentinel):
        raise ConfigurationError(
            "pass sentinel.master_for(service_name), not the Sentinel object: sessions are "
            "written to the master"
        )
    if not hasattr(client, "execute_command") or not hasattr(client, "pipeline"):
        raise ConfigurationError(
            f"cannot store sessions through a {type(client).__qualname__}: pass a redis-py "
            "client (redis.Redis, redis.cluster.RedisCluster, or their redis.asyncio twins)"
        )
    if is_async_client(client) != want_async:
        raise ConfigurationError(
            "that is a redis.asyncio client: use ormsession.configure_async()"
            if want_async is False
            else "configure_async() needs a redis.asyncio client; for a redis.Redis client "
            "use ormsession.configure()"
        )
