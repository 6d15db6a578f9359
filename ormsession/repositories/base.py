"""The repository contract: the one small interface every store implements.

A repository stores opaque records under opaque keys. It knows nothing of ids, cookies,
serializers or policy: the manager hashes ids into keys (64 hex characters), encodes data to
bytes and computes every expiry. Times are integers of microseconds since the Unix epoch,
UTC (``*_us``; :func:`ormsession.expiry.from_us` and ``to_us`` convert), and the manager
passes ``now_us`` into every call so expiry is judged by one clock and tests can move it.

Every method below is a spec; the shared contract suite, shipped as :mod:`ormsession.testing`,
checks each sentence on every store, sync and async (a third-party store subclasses the same
test classes). The abstract methods are what a store must write; ``native_ttl``,
``delete_expired``, ``close`` (and, for asyncio, ``start``) have defaults.

``read(key, now_us)``
    The live record under ``key``, or ``None`` when there is none or it expired
    (``expires_us <= now_us``). Never an error for a missing key.
``create(key, record, now_us)``
    Store ``record`` under ``key`` unless a *live* record or an unexpired moved marker (see
    ``rename``) holds the key; return whether it was stored. An expired record under the
    key does not block (it is replaced).
``update(key, data, expires_us, expected_version, now_us)``
    Compare-and-set: if a live record under ``key`` has version ``expected_version``, replace
    its data and expiry, increment its version and return the new version. Otherwise (a
    different version, missing or expired) change nothing and return ``None``.
``touch(key, expires_us, now_us)``
    Set the expiry of a live record without touching data or version; return whether a live
    record was there.
``delete(key)``
    Remove the record under ``key``, if any. When ``key`` holds a moved marker, remove it and
    delete what it names too, following the chain: a destroy wins over every rename that
    raced it, so no data of a destroyed session is readable again under any key. Idempotent.
``rename(old_key, new_key, expires_us, now_us)``
    Atomically move a live record to ``new_key`` with a new expiry (data, version and creation
    time kept), leaving under ``old_key`` a *moved marker* that names ``new_key`` and expires
    at ``expires_us``. A marker holds no data: ``read``, ``update``, ``touch`` and ``rename``
    see no record under its key (the old key is worthless at once), ``count`` does not count
    it, ``delete`` follows it. Return ``False`` (and change nothing) if no live record is
    under ``old_key``, so of two racing renames of one key exactly one succeeds. The caller
    guarantees ``new_key`` is fresh.
``moved(key, now_us)``
    Whether ``key`` holds an unexpired moved marker: the client holds an id that a
    regenerate replaced while its request was on the way. Asked only after ``read`` found
    nothing under a well-formed id, so a rename raced by another tab's request never costs
    that user the new session (such a request gets a session that is never saved).
``count(now_us)``
    How many live records there are (expired ones and moved markers not counted; the Redis
    and Couchbase stores may still count one for a bucket width after it expired, see
    :mod:`ormsession.repositories.buckets`).
``delete_expired(now_us, limit)``
    Delete up to ``limit`` expired records or moved markers, return how many. The default
    returns 0 for a store whose records expire by themselves (``native_ttl = True``); any
    other store must write it.
``close()``
    Release what the repository created (pools, clients). Never closes a client or engine the
    application handed in. The default does nothing.
``start()`` (asyncio only)
    Start-up work that needs I/O (a schema check, say), awaited once by
    :func:`ormsession.configure_async` before the first call. The default does nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

__all__ = ["AsyncSessionRepository", "SessionRepository", "StoredSession"]


class StoredSession(NamedTuple):
    """One stored session record, as repositories hand it back and forth.

    Immutable; change a field with ``record._replace(expires_us=...)``.
    """

    data: bytes
    version: int
    #: When the session was created, in µs since the Unix epoch (UTC).
    created_us: int
    #: When it expires unless used again, likewise.
    expires_us: int


class SessionRepository(ABC):
    """The synchronous repository contract (see the module docstring for the spec)."""

    #: True for stores that expire records themselves (Redis, Couchbase): gc is a no-op.
    native_ttl: ClassVar[bool] = False

    @abstractmethod
    def read(self, key: str, now_us: int) -> StoredSession | None: ...

    @abstractmethod
    def create(self, key: str, record: StoredSession, now_us: int) -> bool: ...

    @abstractmethod
    def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None: ...

    @abstractmethod
    def touch(self, key: str, expires_us: int, now_us: int) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def rename(self, old_key: str, new_key: str, expires_us: int, now_us: int) -> bool: ...

    @abstractmethod
    def moved(self, key: str, now_us: int) -> bool: ...

    @abstractmethod
    def count(self, now_us: int) -> int: ...

    def delete_expired(self, now_us: int, limit: int) -> int:
        return _nothing_expires(self)

    def close(self) -> None:
        return None


class AsyncSessionRepository(ABC):
    """The asyncio twin of :class:`SessionRepository`: the same spec, awaited."""

    native_ttl: ClassVar[bool] = False

    async def start(self) -> None:
        return None

    @abstractmethod
    async def read(self, key: str, now_us: int) -> StoredSession | None: ...

    @abstractmethod
    async def create(self, key: str, record: StoredSession, now_us: int) -> bool: ...

    @abstractmethod
    async def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None: ...

    @abstractmethod
    async def touch(self, key: str, expires_us: int, now_us: int) -> bool: ...

    @abstractmethod
    async def delete(self, key: str) -> None: ...

    @abstractmethod
    async def rename(self, old_key: str, new_key: str, expires_us: int, now_us: int) -> bool: ...

    @abstractmethod
    async def moved(self, key: str, now_us: int) -> bool: ...

    @abstractmethod
    async def count(self, now_us: int) -> int: ...

    async def delete_expired(self, now_us: int, limit: int) -> int:
        return _nothing_expires(self)

    async def close(self) -> None:
        return None


def _nothing_expires(repository: SessionRepository | AsyncSessionRepository) -> int:
    if not repository.native_ttl:
        raise NotImplementedError(
            f"{type(repository).__qualname__} keeps expired records (native_ttl is False): "
            "it must implement delete_expired"
        )
    return 0
