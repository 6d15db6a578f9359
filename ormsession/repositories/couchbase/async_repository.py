"""The asyncio Couchbase repository, on ``acouchbase``: the same flows, awaited."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from acouchbase.cluster import Cluster as AsyncCluster
from couchbase.exceptions import CouchbaseException, DocumentNotFoundException

from ormsession.errors import StoreError
from ormsession.repositories.base import AsyncSessionRepository, StoredSession
from ormsession.repositories.couchbase import flows
from ormsession.repositories.couchbase.base import (
    READ_OPTIONS,
    Flow,
    Get,
    GetMany,
    KvOp,
    Pause,
    cluster_options,
    document,
    get_many_result,
    sdk_call,
    sdk_miss,
    sdk_result,
    sdk_target,
)
from ormsession.repositories.couchbase.cache import DEFAULT_CACHE_SIZE
from ormsession.repositories.couchbase.counters import DEFAULT_RESOLUTION
from ormsession.repositories.couchbase.errors import wrap_couchbase_error
from ormsession.repositories.couchbase.urls import CouchbaseTarget

__all__ = ["AsyncCouchbaseRepository"]

T = TypeVar("T")


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
        await self._run(flows.probe(self.context), "connect")

    # -- the contract ---------------------------------------------------------------
    async def read(self, key: str, now_us: int) -> StoredSession | None:
        # Every request's one KV get: awaited directly, without a flow or the generic
        # dispatch of _execute.
        context = self.context
        doc_key = context.layout.document_key(key)
        collection = self._collection
        if collection is None or self._closed:
            collection = await self._ready_collection()
        try:
            result = await collection.get(doc_key, READ_OPTIONS)
        except DocumentNotFoundException:
            return None
        except CouchbaseException as exc:
            raise self._wrap(exc, "read") from exc
        return flows.record_read(context, key, document(result), now_us)

    async def create(self, key: str, record: StoredSession, now_us: int) -> bool:
        return await self._run(flows.create(self.context, key, record, now_us), "create")

    async def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        flow = flows.update(self.context, key, data, expires_us, expected_version, now_us)
        return await self._run(flow, "update")

    async def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        return await self._run(flows.touch(self.context, key, expires_us, now_us), "touch")

    async def delete(self, key: str) -> None:
        await self._run(flows.delete(self.context, key), "delete")

    async def rename(self, old_key: str, new_key: str, expires_us: int, now_us: int) -> bool:
        flow = flows.rename(self.context, old_key, new_key, expires_us, now_us)
        return await self._run(flow, "rename")

    async def count(self, now_us: int) -> int:
        return await self._run(flows.count(self.context, now_us), "count")

    async def delete_expired(self, now_us: int, limit: int) -> int:
        """Nothing to do: the server removes expired documents itself (native TTLs)."""
        return 0

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

    async def _run(self, flow: Flow[T], operation: str) -> T:
        """Drive ``flow`` (see the sync twin), awaiting each KV operation."""
        reply: Any = None
        error: StoreError | None = None
        while True:
            try:
                op = flow.throw(error) if error is not None else flow.send(reply)
            except StopIteration as stop:
                result: T = stop.value
                return result
            reply, error = None, None
            try:
                reply = await self._execute(op)
            except CouchbaseException as exc:
                error = self._wrap(exc, operation)
                error.__cause__ = exc

    def _wrap(self, exc: CouchbaseException, operation: str) -> StoreError:
        return wrap_couchbase_error(
            exc, where=self._description, operation=operation, secret=self._secret
        )

    async def _execute(self, op: KvOp) -> Any:
        if isinstance(op, Pause):
            await asyncio.sleep(op.seconds)
            return None
        collection = await self._ready_collection()
        if isinstance(op, GetMany):
            return await self._get_many(collection, op)
        method, args, kwargs = sdk_call(op)
        try:
            result = await getattr(sdk_target(collection, op), method)(*args, **kwargs)
        except CouchbaseException as exc:
            expected, answer = sdk_miss(op, exc)
            if expected:
                return answer
            raise
        return sdk_result(op, result)

    async def _get_many(self, collection: Any, op: GetMany) -> Any:
        # acouchbase has no get_multi: the reads run concurrently on the loop instead.
        calls = [sdk_call(Get(key, op.json)) for key in op.keys]
        outcomes = await asyncio.gather(
            *(getattr(collection, method)(*args, **kwargs) for method, args, kwargs in calls),
            return_exceptions=True,
        )
        results: dict[str, Any] = {}
        failures: dict[str, Exception] = {}
        for key, outcome in zip(op.keys, outcomes, strict=True):
            if isinstance(outcome, CouchbaseException):
                failures[key] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                results[key] = outcome
        return get_many_result(op, results, failures)
