"""The synchronous Couchbase repository, on the ``couchbase`` SDK."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from couchbase.exceptions import CouchbaseException

from ormsession.errors import StoreError
from ormsession.flows import run
from ormsession.repositories.base import (
    OwnedSession,
    Owner,
    SessionRepository,
    StoredSession,
)
from ormsession.repositories.couchbase import flows, users
from ormsession.repositories.couchbase.base import (
    Get,
    GetMany,
    KvOp,
    Pause,
    documents,
    sdk_call,
    sdk_miss,
    sdk_result,
    transcoder,
)
from ormsession.repositories.couchbase.deadline import Deadline, expired
from ormsession.repositories.couchbase.errors import wrap_couchbase_error

__all__ = ["CouchbaseRepository"]


class CouchbaseRepository(SessionRepository):
    """Sessions as documents of one Couchbase collection, expired by native TTLs.

    ``cluster`` is given only when this repository opened it (and closes it in
    :meth:`close`); an app's own client is never closed. Thread-safe: the SDK's collection
    is, and so is the repository's only state, its cache of CAS hints (:mod:`~.cache`) and
    its memo of registered count buckets.
    """

    native_ttl = True
    store_kind = "couchbase"

    def __init__(
        self,
        collection: Any,
        context: flows.Context,
        *,
        description: str,
        cluster: Any = None,
        secret: str | None = None,
        timeout: float = 5.0,
        kv_timeout: float | None = None,
    ) -> None:
        self.collection = collection
        #: Each operation's deadline, across its calls (see :mod:`.deadline`); the SDK's
        #: own bound on each call when known (None: an app's client).
        self.timeout = timeout
        self._kv_timeout = kv_timeout
        self.context = context
        self._description = description
        self._cluster = cluster
        self._secret = secret
        self._closed = False

    def start(self) -> None:
        """Check bucket, scope and collection with one read of a key never written, so a
        wrong name fails at start-up rather than on the first request."""
        self._within("connect")(Get(self.context.layout.probe_key))

    def __repr__(self) -> str:
        return f"<CouchbaseRepository {self._description} prefix={self.context.layout.prefix!r}>"

    # -- the contract ---------------------------------------------------------------
    def read(self, key: str, now_us: int) -> StoredSession | None:
        doc = self._within("read")(Get(self.context.layout.document_key(key)))
        return flows.record_read(self.context, key, doc, now_us)

    def create(
        self, key: str, record: StoredSession, now_us: int, owner_until_us: int | None = None
    ) -> bool:
        flow = flows.create(self.context, key, record, now_us, owner_until_us)
        return run(flow, self._within("create"))

    def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        flow = flows.update(self.context, key, data, expires_us, expected_version, now_us)
        return run(flow, self._within("update"))

    def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        flow = flows.touch(self.context, key, expires_us, now_us)
        return run(flow, self._within("touch"))

    def delete(self, key: str) -> None:
        run(flows.delete(self.context, key), self._within("delete"))

    def rename(
        self,
        old_key: str,
        new_key: str,
        expires_us: int,
        now_us: int,
        owner: Owner | None = None,
        owner_until_us: int | None = None,
        data: bytes | None = None,
        expected_version: int | None = None,
    ) -> bool:
        flow = flows.rename(
            self.context,
            old_key,
            new_key,
            expires_us,
            now_us,
            owner,
            owner_until_us,
            data,
            expected_version,
        )
        return run(flow, self._within("rename"))

    def moved(self, key: str, now_us: int) -> bool:
        doc = self._within("moved")(Get(self.context.layout.document_key(key)))
        return flows.marker_read(doc, now_us)

    def count(self, now_us: int) -> int:
        return run(flows.count(self.context, now_us), self._within("count"))

    def sessions_of(self, user_id: str, now_us: int) -> list[OwnedSession]:
        flow = users.sessions_of(self.context, user_id, now_us)
        return run(flow, self._within("sessions_of"))

    def revoke(self, user_id: str, handle: str, now_us: int) -> bool:
        flow = users.revoke(self.context, user_id, handle, now_us)
        return run(flow, self._within("revoke"))

    def revoke_all(self, user_id: str, keep_key: str | None, now_us: int) -> int:
        flow = users.revoke_all(self.context, user_id, keep_key, now_us)
        return run(flow, self._within("revoke_all"))

    def close(self) -> None:
        self._closed = True
        if self._cluster is not None:
            cluster, self._cluster = self._cluster, None
            cluster.close()

    # -- I/O --------------------------------------------------------------------------
    def _within(self, operation: str) -> Callable[[KvOp], Any]:
        """:meth:`_perform` for the calls of one operation, all within its deadline."""
        return partial(self._perform, operation, deadline=Deadline(self.timeout, self._kv_timeout))

    def _perform(self, operation: str, op: KvOp, deadline: Deadline | None = None) -> Any:
        """Answer one KV operation of ``operation`` (a contract method's name, for errors):
        an expected miss is an answer, an SDK failure a raised ormsession error."""
        if self._closed:
            raise StoreError(f"session store {self._description} is closed")
        try:
            extra = deadline.call_options() if deadline is not None else {}
        except TimeoutError as exc:
            raise expired(self._description, operation, self.timeout, exc) from exc
        if isinstance(op, Pause):
            left = deadline.left() if deadline is not None else op.seconds
            time.sleep(max(min(op.seconds, left), 0.0))
            return None
        try:
            if isinstance(op, GetMany):
                batch = self.collection.get_multi(
                    list(op.keys), transcoder=transcoder(op.json), **extra
                )
                return documents([*batch.results.items(), *batch.exceptions.items()])
            return sdk_result(op, sdk_call(self.collection, op)(**extra))
        except CouchbaseException as exc:
            expected, answer = sdk_miss(op, exc)
            if expected:
                return answer
            raise wrap_couchbase_error(
                exc, where=self._description, operation=operation, secret=self._secret
            ) from exc
