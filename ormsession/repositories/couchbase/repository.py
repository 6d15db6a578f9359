"""The synchronous Couchbase repository, on the ``couchbase`` SDK."""

from __future__ import annotations

import time
from typing import Any, TypeVar

from couchbase.cluster import Cluster
from couchbase.exceptions import CouchbaseException, DocumentNotFoundException

from ormsession.errors import StoreError
from ormsession.repositories.base import SessionRepository, StoredSession
from ormsession.repositories.couchbase import flows
from ormsession.repositories.couchbase.base import (
    READ_OPTIONS,
    Flow,
    GetMany,
    KvOp,
    Pause,
    cluster_options,
    document,
    get_many_options,
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

__all__ = ["CouchbaseRepository"]

T = TypeVar("T")


class CouchbaseRepository(SessionRepository):
    """Sessions as documents of one Couchbase collection, expired by native TTLs.

    Give it a ready ``Collection`` (the app's cluster is then never closed), or build one
    with :meth:`connect`, which opens a ``Cluster`` it owns and closes on :meth:`close`.
    Thread-safe: the SDK's collection is, and so is the repository's only state, its cache
    of CAS hints (:mod:`~.cache`) and its memo of registered count buckets.
    """

    native_ttl = True

    def __init__(
        self,
        collection: Any,
        *,
        key_prefix: str = "ormsession:",
        count_resolution: int = DEFAULT_RESOLUTION,
        cas_cache_size: int = DEFAULT_CACHE_SIZE,
        description: str = "couchbase (application's collection)",
        cluster: Any = None,
        secret: str | None = None,
    ) -> None:
        self.collection = collection
        self.context = flows.Context(
            key_prefix, count_resolution=count_resolution, cache_size=cas_cache_size
        )
        self._description = description
        self._cluster = cluster  # set only when this repository opened (and owns) it
        self._secret = secret
        self._closed = False

    @classmethod
    def connect(cls, target: CouchbaseTarget) -> CouchbaseRepository:
        """Open the cluster ``target`` names, and check bucket, scope and collection with
        one read, so a wrong name fails here and not on the first request."""
        options = cluster_options(target)
        try:
            cluster = Cluster(target.connection_string, options)
        except CouchbaseException as exc:
            raise wrap_couchbase_error(
                exc, where=target.display, operation="connect", secret=target.password
            ) from exc
        try:
            try:
                bucket = cluster.bucket(target.bucket)  # opens the bucket: may raise
            except CouchbaseException as exc:
                raise wrap_couchbase_error(
                    exc, where=target.display, operation="connect", secret=target.password
                ) from exc
            repository = cls(
                bucket.scope(target.scope).collection(target.collection),
                key_prefix=target.key_prefix,
                count_resolution=target.count_resolution,
                cas_cache_size=target.cas_cache_size,
                description=target.display,
                cluster=cluster,
                secret=target.password,
            )
            repository._run(flows.probe(repository.context), "connect")
        except BaseException:
            cluster.close()
            raise
        return repository

    def __repr__(self) -> str:
        return f"<CouchbaseRepository {self._description} prefix={self.context.layout.prefix!r}>"

    # -- the contract ---------------------------------------------------------------
    def read(self, key: str, now_us: int) -> StoredSession | None:
        # Every request's one KV get: run directly, without a flow or the generic
        # dispatch of _execute.
        context = self.context
        doc_key = context.layout.document_key(key)
        self._check_open()
        try:
            result = self.collection.get(doc_key, READ_OPTIONS)
        except DocumentNotFoundException:
            return None
        except CouchbaseException as exc:
            raise self._wrap(exc, "read") from exc
        return flows.record_read(context, key, document(result), now_us)

    def create(self, key: str, record: StoredSession, now_us: int) -> bool:
        return self._run(flows.create(self.context, key, record, now_us), "create")

    def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        flow = flows.update(self.context, key, data, expires_us, expected_version, now_us)
        return self._run(flow, "update")

    def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        return self._run(flows.touch(self.context, key, expires_us, now_us), "touch")

    def delete(self, key: str) -> None:
        self._run(flows.delete(self.context, key), "delete")

    def rename(self, old_key: str, new_key: str, expires_us: int, now_us: int) -> bool:
        return self._run(flows.rename(self.context, old_key, new_key, expires_us, now_us), "rename")

    def count(self, now_us: int) -> int:
        return self._run(flows.count(self.context, now_us), "count")

    def delete_expired(self, now_us: int, limit: int) -> int:
        """Nothing to do: the server removes expired documents itself (native TTLs)."""
        return 0

    def close(self) -> None:
        self._closed = True
        if self._cluster is not None:
            cluster, self._cluster = self._cluster, None
            cluster.close()

    # -- plumbing -------------------------------------------------------------------
    def _run(self, flow: Flow[T], operation: str) -> T:
        """Drive ``flow``: perform each KV operation it yields and send back the result;
        an SDK failure is thrown into the flow as an ormsession error."""
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
                reply = self._execute(op)
            except CouchbaseException as exc:
                error = self._wrap(exc, operation)
                error.__cause__ = exc

    def _wrap(self, exc: CouchbaseException, operation: str) -> StoreError:
        return wrap_couchbase_error(
            exc, where=self._description, operation=operation, secret=self._secret
        )

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"session store {self._description} is closed")

    def _execute(self, op: KvOp) -> Any:
        self._check_open()
        if isinstance(op, Pause):
            time.sleep(op.seconds)
            return None
        if isinstance(op, GetMany):
            batch = self.collection.get_multi(list(op.keys), get_many_options(op))
            return get_many_result(op, batch.results, batch.exceptions)
        method, args, kwargs = sdk_call(op)
        try:
            result = getattr(sdk_target(self.collection, op), method)(*args, **kwargs)
        except CouchbaseException as exc:
            expected, answer = sdk_miss(op, exc)
            if expected:
                return answer
            raise
        return sdk_result(op, result)
