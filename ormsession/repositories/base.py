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
``create(key, record, now_us, owner_until_us=None)``
    Store ``record`` under ``key`` unless a *live* record or an unexpired moved marker (see
    ``rename``) holds the key; return whether it was stored. An expired record under the
    key does not block (it is replaced). A record with an ``owner`` joins that user's index
    (see "Users" below) in the same atomic step.
``update(key, data, expires_us, expected_version, now_us)``
    Compare-and-set: if a live record under ``key`` has version ``expected_version``, replace
    its data and expiry, increment its version and return the new version. Otherwise (a
    different version, missing or expired) change nothing and return ``None``. The owner
    stays as it is.
``touch(key, expires_us, now_us)``
    Set the expiry of a live record without touching data, version or owner; return whether
    a live record was there.
``delete(key)``
    Remove the record under ``key``, if any. When ``key`` holds a moved marker, remove it and
    delete what it names too, following the chain: a destroy wins over every rename that
    raced it, so no data of a destroyed session is readable again under any key. Idempotent.
    A deleted session leaves its user's index (at once, or pruned by the next call that
    reads the index: it is never listed again).
``rename(old_key, new_key, expires_us, now_us, owner=None, owner_until_us=None, data=None,``
``expected_version=None)``
    Atomically move a live record to ``new_key`` with a new expiry (data, version, creation
    time and owner kept), leaving under ``old_key`` a *moved marker* that names ``new_key``
    and expires at ``expires_us``. With ``data`` (the session's data sealed anew for the new
    key: see :mod:`ormsession.encryption`) the moved record holds ``data`` instead of the
    old bytes, which are gone with the marker; the rename then happens only if the record's
    version is ``expected_version`` (else ``False``, nothing changed: a write came in
    between, which the caller reads and re-seals). The version is kept either way. With
    ``owner`` (a login) the moved record is bound to that owner instead, in the same atomic
    step: it joins the new owner's index and leaves any previous owner's, whose
    ``revoke``/``revoke_all`` no longer reach it (nor through the marker). Without it, a
    bound record stays bound, and its index follows it to ``new_key``. A marker holds no
    data: ``read``, ``update``, ``touch`` and ``rename`` see no record under its key (the
    old key is worthless at once), ``count`` does not count it, ``delete`` follows it.
    Return ``False`` (and change nothing) if no live record is under ``old_key``, so of two
    racing renames of one key exactly one succeeds. The caller guarantees ``new_key`` is
    fresh.
``moved(key, now_us)``
    Whether ``key`` holds an unexpired moved marker left by a rename at most
    :data:`REPLACED_ID_GRACE_US` before ``now_us``: the client holds an id that a
    regenerate replaced while its request was on the way. Asked only after ``read`` found
    nothing under a well-formed id, so a rename raced by another tab's request never costs
    that user the new session (such a request gets a session that is never saved). After
    the grace the answer is ``False`` though the marker stays (``delete`` still follows
    it): a browser still sending the old id then never got the rename's response (a
    dropped connection, a double-submitted login form), and must get a session that is
    saved again, or it could keep nothing (a CSRF token, a new login) until the marker
    expires. So a store keeps the rename's time in the marker.
``count(now_us)``
    How many live records there are (expired ones and moved markers not counted; the Redis
    and Couchbase stores may still count one for a bucket width after it expired, see
    :mod:`ormsession.repositories.buckets`).
``delete_expired(now_us, limit)``
    Delete up to ``limit`` expired records or moved markers, return how many. The default
    returns 0 for a store whose records expire by themselves (``native_ttl = True``); any
    other store must write it.

**Users.** A record may carry an :class:`Owner`: the user it is bound to (by a login), a
*handle* (random, opaque and not secret: how a user names one of their sessions, kept by
every rename) and the user agent and IP address seen at login. Each store keeps a per-user
index consistent with expiry, written only by ``create`` and ``rename`` with an owner,
``delete`` and the three calls below (never by ``read``, ``update`` or ``touch``: a request
that does not log in, log out or revoke costs no index write). ``owner_until_us``, given
with an owner, is the latest any session of this login can expire (the absolute timeout's
end; ``None``: no limit): a store whose index expires on its own keeps it at least that long.
Each store remembers when a bound record was last written (the ``now_us`` of its last
``create``, ``update``, ``touch`` or ``rename``): that is the ``seen_us`` it lists.

``sessions_of(user_id, now_us)``
    The live sessions bound to ``user_id``, as :class:`OwnedSession` (key, owner, creation,
    last write and expiry). Never an expired session, a moved marker or a deleted session;
    a store may prune such index entries as it reads (never a full scan of all sessions).
``revoke(user_id, handle, now_us)``
    End the session of ``user_id`` with ``handle`` as ``delete`` would (moved markers
    followed: destroy wins over a rename in flight, and over an ``update`` or ``touch`` in
    flight, which then finds nothing); return whether a live one was there.
``revoke_all(user_id, keep_key, now_us)``
    End every session of ``user_id`` except the one under ``keep_key`` (``None``: all);
    return how many live ones were ended.

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

__all__ = [
    "REPLACED_ID_GRACE_US",
    "AsyncSessionRepository",
    "OwnedSession",
    "Owner",
    "SessionRepository",
    "StoredSession",
    "marker_answers",
]

#: How long after a rename ``moved`` still answers for the old key (see the contract): the
#: time a request sent with the old id, before the browser had the new one, takes to reach
#: the app.
REPLACED_ID_GRACE_US = 60 * 1_000_000


def marker_answers(expires_us: int, renamed_us: int, now_us: int) -> bool:
    """Whether a moved marker expiring at ``expires_us``, left by a rename at ``renamed_us``,
    makes ``moved`` answer True at ``now_us`` (the contract's rule, for a store that reads
    the marker's times itself)."""
    return expires_us > now_us and now_us - renamed_us <= REPLACED_ID_GRACE_US


#: The longest user id, user agent and IP address a store must keep (the policy checks user
#: ids and handles, and cuts user agents and addresses to these lengths).
MAX_USER_ID = 255
MAX_HANDLE = 32
MAX_USER_AGENT = 512
MAX_IP = 45


class Owner(NamedTuple):
    """Who a session belongs to: metadata the server reads, kept outside the data."""

    #: The user's id, as the app names its users (a non-empty string).
    user_id: str
    #: The session's handle: random, opaque, not secret; stable across regenerate and login.
    handle: str
    #: The ``User-Agent`` and address the login came from, if the app passed them.
    user_agent: str | None = None
    ip: str | None = None


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
    #: The user it is bound to, or None.
    owner: Owner | None = None


class OwnedSession(NamedTuple):
    """One live session of a user, as ``sessions_of`` lists it (no data)."""

    key: str
    owner: Owner
    created_us: int
    #: When the store last wrote it (create, update, touch or rename).
    seen_us: int
    expires_us: int


class SessionRepository(ABC):
    """The synchronous repository contract (see the module docstring for the spec)."""

    #: True for stores that expire records themselves (Redis, Couchbase): gc is a no-op.
    native_ttl: ClassVar[bool] = False

    @property
    def store_kind(self) -> str:
        """A short name for this kind of store: the ``ormsession.store`` attribute of its
        metrics (docs/metrics.md). The class name unless the store names itself."""
        return type(self).__name__

    @abstractmethod
    def read(self, key: str, now_us: int) -> StoredSession | None: ...

    @abstractmethod
    def create(
        self, key: str, record: StoredSession, now_us: int, owner_until_us: int | None = None
    ) -> bool: ...

    @abstractmethod
    def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None: ...

    @abstractmethod
    def touch(self, key: str, expires_us: int, now_us: int) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
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
    ) -> bool: ...

    @abstractmethod
    def moved(self, key: str, now_us: int) -> bool: ...

    @abstractmethod
    def count(self, now_us: int) -> int: ...

    @abstractmethod
    def sessions_of(self, user_id: str, now_us: int) -> list[OwnedSession]: ...

    @abstractmethod
    def revoke(self, user_id: str, handle: str, now_us: int) -> bool: ...

    @abstractmethod
    def revoke_all(self, user_id: str, keep_key: str | None, now_us: int) -> int: ...

    def delete_expired(self, now_us: int, limit: int) -> int:
        return _nothing_expires(self)

    def close(self) -> None:
        return None


class AsyncSessionRepository(ABC):
    """The asyncio twin of :class:`SessionRepository`: the same spec, awaited."""

    native_ttl: ClassVar[bool] = False

    @property
    def store_kind(self) -> str:
        """A short name for this kind of store: the ``ormsession.store`` attribute of its
        metrics (docs/metrics.md). The class name unless the store names itself."""
        return type(self).__name__

    async def start(self) -> None:
        return None

    @abstractmethod
    async def read(self, key: str, now_us: int) -> StoredSession | None: ...

    @abstractmethod
    async def create(
        self, key: str, record: StoredSession, now_us: int, owner_until_us: int | None = None
    ) -> bool: ...

    @abstractmethod
    async def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None: ...

    @abstractmethod
    async def touch(self, key: str, expires_us: int, now_us: int) -> bool: ...

    @abstractmethod
    async def delete(self, key: str) -> None: ...

    @abstractmethod
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
    ) -> bool: ...

    @abstractmethod
    async def moved(self, key: str, now_us: int) -> bool: ...

    @abstractmethod
    async def count(self, now_us: int) -> int: ...

    @abstractmethod
    async def sessions_of(self, user_id: str, now_us: int) -> list[OwnedSession]: ...

    @abstractmethod
    async def revoke(self, user_id: str, handle: str, now_us: int) -> bool: ...

    @abstractmethod
    async def revoke_all(self, user_id: str, keep_key: str | None, now_us: int) -> int: ...

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
