"""What the sync and async Redis repositories share besides the flows: their state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.client import NEVER_DECODE

from ormsession.errors import StoreError
from ormsession.repositories.buckets import DEFAULT_RESOLUTION, checked_resolution
from ormsession.repositories.redis.base import (
    DEFAULT_KEY_PREFIX,
    DEFAULT_WAIT_TIMEOUT_MS,
    KeyLayout,
    RedisStoreCore,
)
from ormsession.repositories.redis.clients import describe_client, is_cluster_client
from ormsession.repositories.redis.errors import wrap_redis_error

__all__ = ["RAW", "RedisRepositoryBase"]

#: Session values are bytes: never let a client's decode_responses=True touch them.
RAW = {NEVER_DECODE: True}


class RedisRepositoryBase:
    """A client, the key layout and the options; the twins add the I/O."""

    native_ttl = True

    def __init__(
        self,
        client: Any,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        wait_replicas: int = 0,
        wait_timeout_ms: int = DEFAULT_WAIT_TIMEOUT_MS,
        count_resolution: int = DEFAULT_RESOLUTION,
        owned: Sequence[Any] = (),
        where: str | None = None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        # Typed Any: redis-py's annotations overload every command on sync/async clients.
        self.client = client
        self.cluster = is_cluster_client(client)
        resolution = checked_resolution(count_resolution)
        layout = KeyLayout(key_prefix)
        self.core = RedisStoreCore(layout, cluster=self.cluster, resolution=resolution)
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._owned = list(owned)
        self._where = where or describe_client(client)
        self._secrets = secrets

    @property
    def key_prefix(self) -> str:
        return self.core.layout.prefix

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._where} prefix={self.key_prefix!r}>"

    def _wrap(self, exc: Exception, operation: str) -> StoreError:
        return wrap_redis_error(exc, operation=operation, where=self._where, secrets=self._secrets)
