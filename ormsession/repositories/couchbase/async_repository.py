"""The asyncio Couchbase repository, on ``acouchbase``: the same flows, awaited."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from acouchbase.cluster import Cluster as AsyncCluster
from couchbase.exceptions import CouchbaseException

from ormsession.errors import StoreError
from ormsession.flows import arun
from ormsession.repositories.base import AsyncSessionRepository, StoredSession
from ormsession.repositories.couchbase import flows
from ormsession.repositories.couchbase.base import (
    Get,
    GetMany,
    KvOp,
    Pause,
    cluster_options,
    documents,
    sdk_call,
    sdk_miss,
    sdk_result,
)
from ormsession.repositories.couchbase.cache import DEFAULT_CACHE_SIZE
from ormsession.repositories.couchbase.counters import DEFAULT_RESOLUTION
from ormsession.repositories.couchbase.errors import wrap_couchbase_error
from ormsession.repositories.couchbase.urls import CouchbaseTarget

__all__ = ["AsyncCouchbaseRepository"]


class AsyncCouchbaseRepository(AsyncSessionRepository):
    """The asyncio twin of :class:`~.repository.CouchbaseRepository`.

    An ``acouchbase`` cluster belongs to the event loop it was created on, so one built
    from a URL is opened on first use (or by :meth:`start`, which ``configure_async``
    awaits), inside the app's loop, never at construction time.
    """

    native_ttl = True

    def __init__(
        self,
        collection: Any = None,
        *,
        key_prefix: str = "ormsession:",
        count_resolution: int = DEFAULT_RESOLUTION,
        cas_cache_size: int = DEFAULT_CACHE_SIZE,
        description: str = "couchbase (application's collection)",
        target: CouchbaseTarget | None = None,
    ) -> None:
        if collection is None and target is None:
            raise TypeError("give a ready acouchbase collection or a target to connect to")
        self._collection = collection
        self.context = flows.Context(
            key_prefix, count_resolution=count_resolution, cache_size=cas_cache_size
        )
        self._description = description
        self._target = target
        self._secret = target.password if target is not None else None
        self._cluster: Any = None  # set only when this repository opened (and owns) it
        self._connecting = asyncio.Lock()
        self._closed = False

    @classmethod
    def from_target(cls, target: CouchbaseTarget) -> AsyncCouchbaseRepository:
        return cls(
            key_prefix=target.key_prefix,
            count_resolution=target.count_resolution,
            cas_cache_size=target.cas_cache_size,
            description=target.display,
            target=target,
        )

    def __repr__(self) -> str:
        return (
            f"<AsyncCouchbaseRepository {self._description} prefix={self.context.layout.prefix!r}>"
        )

    async def start(self) -> None:
        """Connect now and check bucket, scope and collection with one read."""
        await self._perform("connect", Get(self.context.layout.probe_key))

    # -- the contract ---------------------------------------------------------------
    async def read(self, key: str, now_us: int) -> StoredSession | None:
        doc = await self._perform("read", Get(self.context.layout.document_key(key)))
        return flows.record_read(self.context, key, doc, now_us)

    async def create(self, key: str, record: StoredSession, now_us: int) -> bool:
        flow = flows.create(self.context, key, record, now_us)
        return await arun(flow, partial(self._perform, "create"))

    async def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        flow = flows.update(self.context, key, data, expires_us, expected_version, now_us)
        return await arun(flow, partial(self._perform, "update"))

    async def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        flow = flows.touch(self.context, key, expires_us, now_us)
        return await arun(flow, partial(self._perform, "touch"))

    async def delete(self, key: str) -> None:
        await arun(flows.delete(self.context, key), partial(self._perform, "delete"))

    async def rename(self, old_key: str, new_key: str, expires_us: int, now_us: int) -> bool:
        flow = flows.rename(self.context, old_key, new_key, expires_us, now_us)
        return await arun(flow, partial(self._perform, "rename"))

    async def count(self, now_us: int) -> int:
        return await arun(flows.count(self.context, now_us), partial(self._perform, "count"))

    async def close(self) -> None:
        self._closed = True
        if self._cluster is not None:
            cluster, self._cluster = self._cluster, None
            self._collection = None
            await cluster.close()

    # -- plumbing -------------------------------------------------------------------
    async def _ready_collection(self) -> Any:
        if self._closed:
            raise StoreError(f"session store {self._description} is closed")
        if self._collection is None:
            async with self._connecting:  # one connect, however many requests wait for it
                if self._collection is None:
                    self._collection = await self._connect()
        return self._collection

    async def _connect(self) -> Any:
        target = self._target
        assert target is not None  # __init__ requires a collection or a target
        options = cluster_options(target)
        cluster = await AsyncCluster.connect(target.connection_string, options)
        try:
            bucket = cluster.bucket(target.bucket)
            await bucket.on_connect()
        except BaseException:
            await cluster.close()
            raise
        self._cluster = cluster
        return bucket.scope(target.scope).collection(target.collection)

    async def _perform(self, operation: str, op: KvOp) -> Any:
        """Answer one KV operation (see the sync twin)."""
        if isinstance(op, Pause):
            await asyncio.sleep(op.seconds)
            return None
        try:
            collection = await self._ready_collection()
            if isinstance(op, GetMany):
                # acouchbase has no get_multi: the reads run concurrently on the loop instead.
                calls = (sdk_call(collection, Get(key, op.json))() for key in op.keys)
                outcomes = await asyncio.gather(*calls, return_exceptions=True)
                return documents(zip(op.keys, outcomes, strict=True))
            return sdk_result(op, await sdk_call(collection, op)())
        except CouchbaseException as exc:
            expected, answer = sdk_miss(op, exc)
            if expected:
                return answer
            raise wrap_couchbase_error(
                exc, where=self._description, operation=operation, secret=self._secret
            ) from exc
