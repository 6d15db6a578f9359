"""The Couchbase operations that take several round trips, as sans-I/O flows: generators
that yield KV operations (:mod:`~ormsession.repositories.couchbase.base`) and receive their
results.

Both repositories drive them with :func:`ormsession.flows.run` (answering each operation
with the ``couchbase`` SDK) or :func:`~ormsession.flows.arun` (with ``acouchbase``); each
CAS loop, each failure case and the counting are written once, here. An SDK failure
arrives as a :class:`~ormsession.errors.StoreError` thrown in at the ``yield``; only the
counting catches it (see :func:`_increment`).

Compare-and-set: every read hands back the document's CAS, and every change is a
``replace`` guarded by it, so a write in between makes ours fail instead of overwriting it.
The contract's ``version`` lives in the record and moves by exactly one per update; the CAS
moves on every mutation (a touch too), so a CAS mismatch is re-examined by version.

The hint cache (:mod:`~.cache`) lets ``update`` and ``delete`` skip that read: when the
repository remembers the document at the expected version, the guarded write goes out at
once, and only if the server refuses it (someone else wrote since) does the flow read and
decide as it would have without the hint.

Renames leave a moved marker (:func:`~.base.encode_marker`) in place of the old document:
it holds no data, so reads, updates, touches and renames find no session there; ``create``
refuses the key until the marker's expiry; ``delete`` removes it and goes on with the key
it names; ``moved`` answers for it only for ``REPLACED_ID_GRACE_US`` after the rename
(whose time the marker keeps). The marker is written by a ``replace`` guarded by the CAS of
the record read, so a rename happens only if nothing touched the record since: of two
racing renames exactly one gets there, and a destroy that removed the record first makes
the rename fail, while a destroy that comes after finds the marker and follows it. A
rename with ``data`` (the session re-sealed for the new key) copies those bytes, and checks
the version on the read whose CAS guards the marker: an update in between refuses the
marker, and the next read returns False, so the update is neither lost nor overwritten by
bytes sealed before it.

A user's index (:mod:`~.index`, read by :mod:`~.users`): ``create`` and ``rename`` of a
bound record add the key to its owner's index *before* the record is written, and a
``delete`` that removed a bound record takes the chain's keys out of it after; ``read``,
``update`` and ``touch`` never touch it (a bound record carries its owner and last write).

Counting (:mod:`~.counters`): each session document names, in its header, the bucket it is
counted in, and that bucket's counter was incremented for it. The increment goes out
*before* the document names the bucket, and the old bucket's decrement *after* the document
has left it, so an interruption leaves a counter too high (until its bucket ends), never a
live session uncounted. Most writes keep their bucket and touch no counter.
"""

from __future__ import annotations

import logging
import random
from typing import NamedTuple

from ormsession.errors import ConfigurationError, StoreError
from ormsession.repositories.base import Owner, StoredSession, marker_answers
from ormsession.repositories.buckets import checked_resolution
from ormsession.repositories.couchbase import index
from ormsession.repositories.couchbase.base import (
    Count,
    Doc,
    Flow,
    Get,
    GetMany,
    Insert,
    KeyLayout,
    Pause,
    Remove,
    Replace,
    decode_marker,
    decode_record,
    encode_marker,
    encode_record,
)
from ormsession.repositories.couchbase.cache import (
    DEFAULT_CACHE_SIZE,
    MAX_CACHE_SIZE,
    Hint,
    HintCache,
)
from ormsession.repositories.couchbase.counters import (
    DEFAULT_RESOLUTION,
    UNCOUNTED,
    Bucket,
    counter_expiry,
    counter_value,
    decode_levels,
    encode_levels,
    expiry_for,
    levels_expiry,
    live_buckets,
    place,
    raise_horizon,
    target,
)

__all__ = [
    "Context",
    "count",
    "create",
    "decrement",
    "delete",
    "marker_read",
    "record_read",
    "rename",
    "touch",
    "update",
]

logger = logging.getLogger("ormsession")

#: Rounds of read + compare-and-set before giving up on one session document. Each lost
#: round means another request wrote that very session in between.
CAS_ATTEMPTS = 16
#: Rounds for the levels document, which every writer of a new count bucket shares.
LEVELS_ATTEMPTS = 32
#: Counters read per batched round trip by ``count``.
GET_MANY_BATCH = 1024


class Context:
    """What the flows of one repository share: the key layout, the count resolution, the
    hint cache, and the count buckets known to be registered in the levels document."""

    __slots__ = ("cache", "layout", "registered", "resolution")

    def __init__(
        self,
        prefix: str,
        *,
        count_resolution: int = DEFAULT_RESOLUTION,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.resolution = checked_resolution(count_resolution)
        if not 0 <= cache_size <= MAX_CACHE_SIZE:
            raise ConfigurationError(f"cas_cache_size must be 0-{MAX_CACHE_SIZE}")
        self.layout = KeyLayout(prefix)
        self.cache = HintCache(cache_size)
        #: level -> the latest bucket end the levels document is known to hold. A memo: a
        #: lost race only costs a read of the levels document.
        self.registered: dict[int, int] = {}

    def note_levels(self, levels: dict[int, int]) -> None:
        for level, end in levels.items():
            if self.registered.get(level, 0) < end:
                self.registered[level] = end


class _Found(NamedTuple):
    """A live session document as read: its record, count bucket and CAS."""

    record: StoredSession
    bucket: Bucket
    cas: int


def record_read(ctx: Context, key: str, doc: Doc | None, now_us: int) -> StoredSession | None:
    """The live record in what a read's ``get`` of ``key`` returned, or None; its CAS is
    remembered for the update that usually follows. (A read is one ``get``, which the
    repositories make themselves.)"""
    found = _live(doc, now_us)
    if found is None:
        return None
    _remember(ctx, key, found.cas, found.record, found.bucket)
    return found.record


def marker_read(doc: Doc | None, now_us: int) -> bool:
    """Whether what a ``get`` returned is an unexpired moved marker left at most
    :data:`~ormsession.repositories.base.REPLACED_ID_GRACE_US` before ``now_us`` (a
    ``moved`` is one ``get``, which the repositories make themselves). After the grace a
    browser still sending the old id never got the new one, and must get a session that
    is saved again; the marker itself stays until its expiry."""
    marker = decode_marker(doc.value) if doc is not None else None
    return marker is not None and marker_answers(marker.expires_us, marker.renamed_us, now_us)


def create(
    ctx: Context,
    key: str,
    record: StoredSession,
    now_us: int,
    owner_until_us: int | None = None,
) -> Flow[bool]:
    """Insert the record; a bound one joins its owner's index first (see :mod:`~.index`:
    a create that fails after that leaves an entry naming no session, which is pruned,
    never a session its index does not name)."""
    doc_key = ctx.layout.document_key(key)
    if record.owner is not None:
        until = index.until_for(owner_until_us, record.expires_us)
        yield from index.add(ctx.layout, record.owner, key, until, now_us)
    bucket = target(UNCOUNTED, record.expires_us, now_us, ctx.resolution)
    if not (yield from _increment(ctx, bucket, now_us)):
        bucket = UNCOUNTED
    value = encode_record(record, bucket, now_us)
    expiry = expiry_for(record.expires_us, now_us)
    for _ in range(CAS_ATTEMPTS):
        cas = yield Insert(doc_key, value, expiry)
        if cas is None:
            existing: Doc | None = yield Get(doc_key)
            if existing is None:
                continue  # its TTL (or a delete) removed it since: insert again
            found = _live(existing, now_us)
            if found is not None:
                _remember(ctx, key, found.cas, found.record, found.bucket)
                yield from decrement(ctx, bucket)  # not ours to count after all
                return False
            marker = decode_marker(existing.value)
            if marker is not None and marker.expires_us > now_us:
                # The key was renamed away: its old id stays useless until the rename's
                # expiry (an id planted before a login cannot be taken over).
                yield from decrement(ctx, bucket)
                return False
            # Expired by `now_us` but not yet removed by its TTL: replace exactly that
            # document (its CAS), so a concurrent create of the key cannot be overwritten.
            cas = yield Replace(doc_key, value, existing.cas, expiry)
            if cas is None:
                continue
            yield from decrement(ctx, _bucket_of(existing))
        _remember(ctx, key, cas, record, bucket)
        return True
    yield from decrement(ctx, bucket)
    raise StoreError(f"create of session {key[:8]}… kept racing other writers; giving up")


def update(
    ctx: Context,
    key: str,
    data: bytes,
    expires_us: int,
    expected_version: int,
    now_us: int,
) -> Flow[int | None]:
    hint = ctx.cache.get(key)
    if hint is not None and hint.version == expected_version and hint.expires_us > now_us:
        # The document as last seen is live at the expected version: if the server still
        # has exactly that state (its CAS), the contract's conditions hold.
        new = StoredSession(data, expected_version + 1, hint.created_us, expires_us, hint.owner)
        if (yield from _rewrite(ctx, key, hint.cas, hint.bucket, new, now_us)):
            return new.version
        # Someone wrote or touched it since, or it is gone: decide on what is there now
        # (and remember that instead, even if its CAS is lower: a failover can roll back).
        ctx.cache.pop(key)
    doc_key = ctx.layout.document_key(key)
    for _ in range(CAS_ATTEMPTS):
        doc: Doc | None = yield Get(doc_key)
        found = _live(doc, now_us)
        if found is None:
            return None
        _remember(ctx, key, found.cas, found.record, found.bucket)
        current = found.record
        if current.version != expected_version:
            return None
        new = current._replace(data=data, version=expected_version + 1, expires_us=expires_us)
        if (yield from _rewrite(ctx, key, found.cas, found.bucket, new, now_us)):
            return new.version
        # The CAS moved: another update (then the version moved too and the next round
        # returns None) or a touch (same version: try again on the touched document).
    return None


def touch(ctx: Context, key: str, expires_us: int, now_us: int) -> Flow[bool]:
    """A CAS-guarded rewrite of the record with the new expiry.

    The SDK's ``touch`` would move only the document's TTL, while the contract reads the
    expiry back from the record (and reads judge by it): a replace is the honest way. It
    rewrites the data too, which is why the manager touches rarely (``refresh_ratio``).
    """
    doc_key = ctx.layout.document_key(key)
    for _ in range(CAS_ATTEMPTS):
        doc: Doc | None = yield Get(doc_key)
        found = _live(doc, now_us)
        if found is None:
            return False
        _remember(ctx, key, found.cas, found.record, found.bucket)
        if found.record.expires_us == expires_us:
            return True
        moved = found.record._replace(expires_us=expires_us)
        if (yield from _rewrite(ctx, key, found.cas, found.bucket, moved, now_us)):
            return True
    raise StoreError(f"touch of session {key[:8]}… kept racing other writers; giving up")


def delete(ctx: Context, key: str) -> Flow[None]:
    """Remove the document under ``key``; when it is a moved marker, go on with the key it
    names, down the chain, so that a destroy also removes where a racing regenerate moved
    the session. A rename that moves it on meanwhile leaves a marker to follow in turn; one
    that comes after finds nothing to move.

    A bound record removed (a logout) then leaves its owner's index with the keys of the
    chain: a read and a replace of the index, best effort (a failure leaves the entries
    for the next listing or revoke to prune)."""
    seen = {key}
    named, owner = yield from _delete_one(ctx, key)
    while named is not None and named not in seen:
        seen.add(named)
        named, owner = yield from _delete_one(ctx, named)
    if owner is not None:
        yield from index.prune(ctx.layout, owner.user_id, seen)


def _delete_one(ctx: Context, key: str) -> Flow[tuple[str | None, Owner | None]]:
    """Remove one document, guarded by the CAS read so that what was read is what was
    removed: a record's header names the bucket to uncount it from (and its owner, which
    is returned), a marker the key it moved to (returned, for :func:`delete` to go on
    with)."""
    doc_key = ctx.layout.document_key(key)
    hint = ctx.cache.pop(key)
    if hint is not None and (yield Remove(doc_key, hint.cas)):
        yield from decrement(ctx, hint.bucket)  # hints are of records, never of markers
        return None, hint.owner
    doc: Doc | None = None
    for _ in range(CAS_ATTEMPTS):
        doc = yield Get(doc_key)
        if doc is None:
            return None, None
        if (yield Remove(doc_key, doc.cas)):
            break
    else:
        # Rewritten between every read and remove: remove it whatever it holds now (it is
        # probably what was read last).
        if not (yield Remove(doc_key)):
            return None, None
    assert doc is not None  # CAS_ATTEMPTS > 0: read at least once
    marker = decode_marker(doc.value)
    if marker is not None:
        return marker.to, None
    decoded = decode_record(doc.value)
    yield from decrement(ctx, _bucket_of(doc))
    return None, decoded[0].owner if decoded is not None else None


def rename(
    ctx: Context,
    old_key: str,
    new_key: str,
    expires_us: int,
    now_us: int,
    owner: Owner | None = None,
    owner_until_us: int | None = None,
    data: bytes | None = None,
    expected_version: int | None = None,
) -> Flow[bool]:
    """Insert the record under ``new_key``, then replace the old document with a moved
    marker naming ``new_key`` and the rename's time (``now_us``), guarded by the CAS read.

    Couchbase has no multi-document atomic write outside transactions (which need more
    than a KV node), so the steps are ordered for the safe failure: a crash between them
    leaves both keys holding the session (the old one until its TTL), never neither. The
    guarded replace is the moment the rename happens. If it fails, the old record changed
    or went between the read and the replace: the new copy is removed again and the rename
    starts over, and returns False once the old key holds no live record (a destroy, or a
    racing rename's marker, won).

    With ``data`` (the session sealed anew for ``new_key``) the copy holds ``data``, never
    the old bytes, and the rename happens only if the record read is at
    ``expected_version``. That check and the marker are one decision: the check is made on
    the read whose CAS guards the marker, so an update that lands anywhere between the read
    and the marker moves the CAS, the marker is refused, the copy (sealed from the stale
    state) is removed, and the next round reads the new version and returns False; the
    caller re-reads and re-seals. The old ciphertext goes with the marker's replace.

    A bound record (its own owner, or ``owner``: a login binds it) has ``new_key`` added to
    its owner's index before the copy is written, so the index names every live key at
    every step; the old key leaves the index when a later call finds the marker.
    """
    old_doc, new_doc = ctx.layout.document_key(old_key), ctx.layout.document_key(new_key)
    expiry = expiry_for(expires_us, now_us)
    marker = encode_marker(new_key, expires_us, now_us)
    for _ in range(CAS_ATTEMPTS):
        doc: Doc | None = yield Get(old_doc)
        found = _live(doc, now_us)
        if found is None:
            return False
        if data is not None and found.record.version != expected_version:
            return False  # a write came in first: nothing was written by this call
        bound = owner or found.record.owner
        if bound is not None:
            # Every round: a revoke may have pruned the entry with the copy it removed.
            if owner is not None:
                until = index.until_for(owner_until_us, expires_us)
                yield from index.add(ctx.layout, bound, new_key, until, now_us)
            else:
                yield from index.add(
                    ctx.layout, bound, new_key, expires_us, now_us, inherit=old_key
                )
        record = found.record._replace(expires_us=expires_us, owner=bound)
        if data is not None:
            record = record._replace(data=data)
        # The copy takes over the old document's count (and its bucket, if the new expiry
        # is still within it): one session, counted once. The marker is counted nowhere.
        bucket = target(found.bucket, expires_us, now_us, ctx.resolution)
        moved = bucket != found.bucket
        if moved and not (yield from _increment(ctx, bucket, now_us)):
            bucket, moved = found.bucket, False
        new_cas = yield Insert(new_doc, encode_record(record, bucket, now_us), expiry)
        if new_cas is None:
            if moved:
                yield from decrement(ctx, bucket)
            raise StoreError(f"rename target {new_key[:8]}… is taken (it must be a fresh key)")
        if (yield Replace(old_doc, marker, found.cas, expiry)) is not None:
            ctx.cache.pop(old_key)
            _remember(ctx, new_key, new_cas, record, bucket)
            if moved:
                yield from decrement(ctx, found.bucket)
            return True
        yield Remove(new_doc, new_cas)
        if moved:
            yield from decrement(ctx, bucket)
    raise StoreError(f"rename of session {old_key[:8]}… kept racing other writers; giving up")


def count(ctx: Context, now_us: int) -> Flow[int]:
    """Live sessions: the counters of every registered bucket that ends after ``now_us``
    (the levels document, then the counters in batched reads)."""
    doc: Doc | None = yield Get(ctx.layout.levels_key, json=True)
    levels = decode_levels(doc.value if doc else None)
    ctx.note_levels(levels)
    keys = [ctx.layout.counter_key(bucket) for bucket in live_buckets(levels, now_us)]
    total = 0
    for start in range(0, len(keys), GET_MANY_BATCH):
        docs: dict[str, Doc] = yield GetMany(tuple(keys[start : start + GET_MANY_BATCH]))
        total += sum(counter_value(found.value) for found in docs.values())
    return total


# -- helpers ---------------------------------------------------------------------------------
def _live(doc: Doc | None, now_us: int) -> _Found | None:
    if doc is None:
        return None
    decoded = decode_record(doc.value)
    if decoded is None:
        # A moved marker is an ordinary miss: the session was renamed away.
        if decode_marker(doc.value) is None:
            logger.warning("a document under the session key prefix is not an ormsession record")
        return None
    record, bucket = decoded
    return _Found(record, bucket, doc.cas) if record.expires_us > now_us else None


def _bucket_of(doc: Doc) -> Bucket:
    """The bucket a document (live or not) is counted in; none for a foreign document."""
    decoded = decode_record(doc.value)
    return decoded[1] if decoded is not None else UNCOUNTED


def _remember(ctx: Context, key: str, cas: int, record: StoredSession, bucket: Bucket) -> None:
    hint = Hint(cas, record.version, record.created_us, record.expires_us, bucket, record.owner)
    ctx.cache.put(key, hint)


def _rewrite(
    ctx: Context, key: str, cas: int, current: Bucket, record: StoredSession, now_us: int
) -> Flow[bool]:
    """Replace the document whose CAS is ``cas`` (counted in ``current``) with ``record``;
    False when its CAS moved (or it is gone). Moves its count only when the new expiry
    leaves its bucket: increment the new one first, decrement the old one after."""
    bucket, moved = current, False
    expires_us = record.expires_us
    if not current.holds(expires_us):  # the common case skips all of this
        bucket = place(expires_us, now_us, ctx.resolution)
        moved = bucket != current
        if moved and not (yield from _increment(ctx, bucket, now_us)):
            # Not counted anew: it stays counted where it was (see _increment).
            bucket, moved = current, False
    value = encode_record(record, bucket, now_us)
    new_cas = yield Replace(
        ctx.layout.document_key(key), value, cas, expiry_for(record.expires_us, now_us)
    )
    if new_cas is None:
        if moved:
            yield from decrement(ctx, bucket)  # undo: the document did not move there
        return False
    _remember(ctx, key, new_cas, record, bucket)
    if moved:
        yield from decrement(ctx, current)
    return True


def _increment(ctx: Context, bucket: Bucket, now_us: int) -> Flow[bool]:
    """Count a session in ``bucket`` (registering the bucket first, so ``count`` knows to
    read it); False if that failed.

    Best effort: a session write must not fail over its count. On failure the caller keeps
    the session in the bucket it was counted in before (or, for a new one, uncounted), so
    the headers never name a bucket that was not incremented for them. ``count`` may then
    miss that session, once its old bucket has ended, until its next write counts it.
    """
    if not bucket.counted:
        return False
    try:
        if not (yield from _register(ctx, bucket, now_us)):
            return False
        yield Count(ctx.layout.counter_key(bucket), 1, counter_expiry(bucket, now_us))
    except StoreError as exc:
        logger.warning("could not count a couchbase session (count may miss it): %s", exc)
        return False
    return True


def decrement(ctx: Context, bucket: Bucket) -> Flow[None]:
    """Uncount a session from ``bucket``, best effort: a failure leaves the count one too
    high until that bucket ends. A counter that is gone has ended with its bucket."""
    if not bucket.counted:
        return
    try:
        yield Count(ctx.layout.counter_key(bucket), -1)
    except StoreError as exc:
        logger.warning(
            "could not uncount a couchbase session (count may include it for up to %d s): %s",
            1 << bucket.level,
            exc,
        )


def _register(ctx: Context, bucket: Bucket, now_us: int) -> Flow[bool]:
    """Make sure the levels document covers ``bucket`` (its level, up to its end)."""
    if ctx.registered.get(bucket.level, 0) >= bucket.end:
        return True
    key = ctx.layout.levels_key
    for attempt in range(LEVELS_ATTEMPTS):
        doc: Doc | None = yield Get(key, json=True)
        levels = decode_levels(doc.value if doc else None)
        updated = raise_horizon(levels, bucket, now_us)
        if updated is None:
            ctx.note_levels(levels)
            return True
        value, expiry = encode_levels(updated), levels_expiry(updated, now_us)
        if doc is None:
            cas = yield Insert(key, value, expiry, json=True)
        else:
            cas = yield Replace(key, value, doc.cas, expiry, json=True)
        if cas is not None:
            ctx.note_levels(updated)
            return True
        # Jittered backoff, so writers that collided do not collide again in lockstep.
        yield Pause(random.uniform(0, 0.001 * min(attempt + 1, 20)))  # noqa: S311
    logger.warning(
        "gave up registering a couchbase count bucket after %d conflicts", LEVELS_ATTEMPTS
    )
    return False
