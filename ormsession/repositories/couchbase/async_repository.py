"""The asyncio Couchbase repository, on ``acouchbase``: the same flows, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from couchbase.exceptions import CouchbaseException

from ormsession.errors import StoreError
from ormsession.flows import arun
from ormsession.repositories.base import (
    AsyncSessionRepository,
    OwnedSession,
    Owner,
    StoredSession,
)
from ormsession.repositories.couchbase import flows, users
from ormsession.repositories.couchbase.base import (
    Get,
    GetMany,
    KvOp,
    Pause,
    SdkOp,
    documents,
    sdk_call,
    sdk_miss,
    sdk_result,
)
from ormsession.repositories.couchbase.clients import connect_async
from ormsession.repositories.couchbase.deadline import Deadline, expired
from ormsession.repositories.couchbase.errors import wrap_couchbase_error
from ormsession.repositories.couchbase.urls import CouchbaseTarget

__all__ = ["AsyncCouchbaseRepository"]


class AsyncCouchbaseRepository(AsyncSessionRepository):
    """The asyncio twin of :class:`~.repository.CouchbaseRepository`.

    Without a ready ``collection`` it connects to ``target`` on :meth:`start` (which
    ``configure_async`` awaits) or on first use, inside the app's event loop, to which an
    ``acouchbase`` cluster belongs; that cluster is its own, closed by :meth:`close`.
    """

    native_ttl = True
    store_kind = "couchbase"

    def __init__(
        self,
        collection: Any,
        context: flows.Context,
        *,
        description: str,
        target: CouchbaseTarget | None = None,
        timeout: float = 5.0,
        kv_timeout: float | None = None,
    ) -> None:
        if collection is None and target is None:
            raise TypeError("give a ready acouchbase collection or a target to connect to")
        self._collection = collection
        self.context = context
        self._description = description
        self._target = target
        self._secret = target.password if target is not None else None
        self._cluster: Any = None  # set only when this repository opened (and owns) it
        self._connecting = asyncio.Lock()
        self._closed = False
        #: Each operation's deadline (see the sync twin).
        self.timeout = timeout
        self._kv_timeout = kv_timeout

    def __repr__(self) -> str:
        return (
            f"<AsyncCouchbaseRepository {self._description} prefix={self.context.layout.prefix!r}>"
        )

    async def start(self) -> None:
        """Connect now and check bucket, scope and collection with one read of a key never
        written, so a wrong name fails at start-up rather than on the first request."""
        await self._within("connect")(Get(self.context.layout.probe_key))

    # -- the contract ---------------------------------------------------------------
    async def read(self, key: str, now_us: int) -> StoredSession | None:
        doc = await self._within("read")(Get(self.context.layout.document_key(key)))
        return flows.record_read(self.context, key, doc, now_us)

    async def create(
        self, key: str, record: StoredSession, now_us: int, owner_until_us: int | None = None
    ) -> bool:
        flow = flows.create(self.context, key, record, now_us, owner_until_us)
        return await arun(flow, self._within("create"))

    async def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        flow = flows.update(self.context, key, data, expires_us, expected_version, now_us)
        return await arun(flow, self._within("update"))

    async def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        flow = flows.touch(self.context, key, expires_us, now_us)
        return await arun(flow, self._within("touch"))

    async def delete(self, key: str) -> None:
        await arun(flows.delete(self.context, key), self._within("delete"))

    async def rename(
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
        return await arun(flow, self._within("rename"))

    async def moved(self, key: str, now_us: int) -> bool:
        doc = await self._within("moved")(Get(self.context.layout.document_key(key)))
        return flows.marker_read(doc, now_us)

    async def count(self, now_us: int) -> int:
        return await arun(flows.count(self.context, now_us), self._within("count"))

    async def sessions_of(self, user_id: str, now_us: int) -> list[OwnedSession]:
        flow = users.sessions_of(self.context, user_id, now_us)
        return await arun(flow, self._within("sessions_of"))

    async def revoke(self, user_id: str, handle: str, now_us: int) -> bool:
        flow = users.revoke(self.context, user_id, handle, now_us)
        return await arun(flow, self._within("revoke"))

    async def revoke_all(self, user_id: str, keep_key: str | None, now_us: int) -> int:
        flow = users.revoke_all(self.context, user_id, keep_key, now_us)
        return await arun(flow, self._within("revoke_all"))

    async def close(self) -> None:
        self._closed = True
        if self._cluster is not None:
            cluster, self._cluster = self._cluster, None
            self._collection = None
            await cluster.close()

    # -- I/O --------------------------------------------------------------------------
    async def _ready_collection(self) -> Any:
        if self._closed:
            raise StoreError(f"session store {self._description} is closed")
        if self._collection is None:
            async with self._connecting:  # one connect, however many requests wait for it
                if self._collection is None:
                    assert self._target is not None  # __init__ requires one or the other
                    self._cluster, self._collection = await connect_async(self._target)
        return self._collection

    def _within(self, operation: str) -> Callable[[KvOp], Awaitable[Any]]:
        """:meth:`_perform` for the calls of one operation, all within its deadline."""
        return partial(self._perform, operation, deadline=Deadline(self.timeout, self._kv_timeout))

    async def _perform(self, operation: str, op: KvOp, deadline: Deadline | None = None) -> Any:
        """Answer one KV operation (see the sync twin)."""
        if isinstance(op, Pause):
            left = deadline.left() if deadline is not None else op.seconds
            await asyncio.sleep(max(min(op.seconds, left), 0.0))
            return None
        try:
            if deadline is None:
                return await self._call(operation, op, {})
            # Connecting (on first use) and the call, both within what is left.
            async with asyncio.timeout(max(deadline.left(), 0.0)):
                return await self._call(operation, op, deadline.call_options())
        except TimeoutError as exc:
            raise expired(self._description, operation, self.timeout, exc) from exc

    async def _call(self, operation: str, op: SdkOp | GetMany, extra: dict[str, Any]) -> Any:
        collection = await self._ready_collection()
        try:
            if isinstance(op, GetMany):
                # acouchbase has no get_multi: the reads run concurrently on the loop instead.
                calls = (sdk_call(collection, Get(key, op.json))(**extra) for key in op.keys)
                outcomes = await asyncio.gather(*calls, return_exceptions=True)
                return documents(zip(op.keys, outcomes, strict=True))
            return sdk_result(op, await sdk_call(collection, op)(**extra))
        except CouchbaseException as exc:
            expected, answer = sdk_miss(op, exc)
            if expected:
                return answer
            raise wrap_couchbase_error(
                exc, where=self._description, operation=operation, secret=self._secret
            ) from exc
