"""Every repository method as a sans-I/O flow: a generator that yields KV operations
(:mod:`~ormsession.repositories.couchbase.base`) and receives their results.

The sync repository answers them with the ``couchbase`` SDK, the async one with
``acouchbase``; each CAS loop, each failure case and the count index are written once, here.
An SDK failure arrives as a :class:`~ormsession.errors.StoreError` thrown in at the
``yield``; only the count index's upkeep catches it (see :func:`_index`).

Compare-and-set: every read hands back the document's CAS, and every change is a
``replace`` guarded by it, so a write in between makes ours fail instead of overwriting it.
The contract's ``version`` lives in the record and moves by exactly one per update; the CAS
moves on every mutation (a touch too), so a CAS mismatch is re-examined by version.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from datetime import datetime

from ormsession.errors import StoreError
from ormsession.expiry import utcnow
from ormsession.repositories.base import StoredSession
from ormsession.repositories.couchbase.base import (
    Doc,
    Flow,
    Get,
    GetMany,
    Insert,
    KeyLayout,
    Pause,
    Remove,
    Replace,
    decode_record,
    encode_record,
    expiry_for,
)
from ormsession.repositories.couchbase.index import (
    Changes,
    Entry,
    apply_changes,
    decode_shard,
    encode_shard,
    live_entries,
    shard_expiry,
    to_us,
)

__all__ = ["count", "create", "delete", "probe", "read", "rename", "touch", "update"]

logger = logging.getLogger("ormsession")

#: Rounds of read + compare-and-set before giving up on one session document. Each lost
#: round means another request wrote that very session in between.
CAS_ATTEMPTS = 16
#: Rounds for one count index shard, which all sessions of the shard share.
INDEX_ATTEMPTS = 32


def probe(layout: KeyLayout) -> Flow[None]:
    """Read a key that never exists: fails fast on a wrong bucket, scope or collection."""
    yield Get(layout.probe_key)


def read(layout: KeyLayout, key: str, now: datetime) -> Flow[StoredSession | None]:
    doc = yield Get(layout.document_key(key))
    return _live(doc, now)


def create(layout: KeyLayout, key: str, record: StoredSession, now: datetime) -> Flow[bool]:
    doc_key = layout.document_key(key)
    value, expiry = encode_record(record), expiry_for(record.expires_at, now)
    for _ in range(CAS_ATTEMPTS):
        cas = yield Insert(doc_key, value, expiry)
        if cas is None:
            existing: Doc | None = yield Get(doc_key)
            if existing is None:
                continue  # its TTL (or a delete) removed it since: insert again
            if _live(existing, now) is not None:
                return False
            # Expired by `now` but not yet removed by its TTL: replace exactly that
            # document (its CAS), so a concurrent create of the key cannot be overwritten.
            cas = yield Replace(doc_key, value, existing.cas, expiry)
            if cas is None:
                continue
        yield from _index(layout, {key: Entry(to_us(record.expires_at), cas)}, now)
        return True
    raise StoreError(f"create of session {key[:8]}… kept racing other writers; giving up")


def update(
    layout: KeyLayout,
    key: str,
    data: bytes,
    expires_at: datetime,
    expected_version: int,
    now: datetime,
) -> Flow[int | None]:
    doc_key = layout.document_key(key)
    for _ in range(CAS_ATTEMPTS):
        doc: Doc | None = yield Get(doc_key)
        current = _live(doc, now)
        if doc is None or current is None or current.version != expected_version:
            return None
        new = replace(current, data=data, version=expected_version + 1, expires_at=expires_at)
        cas = yield Replace(doc_key, encode_record(new), doc.cas, expiry_for(expires_at, now))
        if cas is not None:
            if expires_at != current.expires_at:
                yield from _index(layout, {key: Entry(to_us(expires_at), cas)}, now)
            return new.version
        # The CAS moved: another update (then the version moved too and the next round
        # returns None) or a touch (same version: try again on the touched document).
    return None


def touch(layout: KeyLayout, key: str, expires_at: datetime, now: datetime) -> Flow[bool]:
    """A CAS-guarded rewrite of the record with the new expiry.

    The SDK's ``touch`` would move only the document's TTL, while the contract reads the
    expiry back from the record (and reads judge by it): a replace is the honest way. It
    rewrites the data too, which is why the manager touches rarely (``refresh_ratio``).
    """
    doc_key = layout.document_key(key)
    for _ in range(CAS_ATTEMPTS):
        doc: Doc | None = yield Get(doc_key)
        current = _live(doc, now)
        if doc is None or current is None:
            return False
        if current.expires_at == expires_at:
            return True
        moved = replace(current, expires_at=expires_at)
        cas = yield Replace(doc_key, encode_record(moved), doc.cas, expiry_for(expires_at, now))
        if cas is not None:
            yield from _index(layout, {key: Entry(to_us(expires_at), cas)}, now)
            return True
    raise StoreError(f"touch of session {key[:8]}… kept racing other writers; giving up")


def delete(layout: KeyLayout, key: str) -> Flow[None]:
    yield Remove(layout.document_key(key))
    # Also when the document was already gone: its index entry may be a leftover.
    yield from _index(layout, {key: None}, utcnow())


def rename(
    layout: KeyLayout, old_key: str, new_key: str, expires_at: datetime, now: datetime
) -> Flow[bool]:
    """Insert the record under ``new_key``, then remove ``old_key`` guarded by the CAS read.

    Couchbase has no multi-document atomic write outside transactions (which need more
    than a KV node), so the steps are ordered for the safe failure: a crash between them
    leaves both keys holding the session (the old one until its TTL), never neither. If
    the old record changed or vanished between the read and the remove, the new copy is
    removed again and the rename starts over (or returns False: a destroy wins).
    """
    old_doc, new_doc = layout.document_key(old_key), layout.document_key(new_key)
    expiry = expiry_for(expires_at, now)
    for _ in range(CAS_ATTEMPTS):
        doc: Doc | None = yield Get(old_doc)
        current = _live(doc, now)
        if doc is None or current is None:
            return False
        moved = encode_record(replace(current, expires_at=expires_at))
        new_cas = yield Insert(new_doc, moved, expiry)
        if new_cas is None:
            raise StoreError(f"rename target {new_key[:8]}… is taken (it must be a fresh key)")
        if (yield Remove(old_doc, doc.cas)):
            changes = {old_key: None, new_key: Entry(to_us(expires_at), new_cas)}
            yield from _index(layout, changes, now)
            return True
        yield Remove(new_doc, new_cas)
    raise StoreError(f"rename of session {old_key[:8]}… kept racing other writers; giving up")


def count(layout: KeyLayout, now: datetime) -> Flow[int]:
    """Live sessions per the count index: one batched read of every shard."""
    docs: dict[str, Doc] = yield GetMany(layout.index.shard_keys())
    return sum(live_entries(decode_shard(doc.value), now) for doc in docs.values())


def _live(doc: Doc | None, now: datetime) -> StoredSession | None:
    if doc is None:
        return None
    record = decode_record(doc.value)
    if record is None:
        logger.warning("a document under the session key prefix is not an ormsession record")
        return None
    return record if record.expires_at > now else None


def _index(layout: KeyLayout, changes: Changes, now: datetime) -> Flow[None]:
    """Apply ``changes`` to the count index, best effort.

    The session write has already happened: failing the request now would only lose the
    response. So a failure is logged and the count is off by this session until its next
    write (every write refreshes its entry) or its expiry (which ends the entry anyway).
    """
    for shard_key, shard_changes in layout.index.group(changes).items():
        try:
            yield from _update_shard(shard_key, shard_changes, now)
        except StoreError as exc:
            logger.warning("could not update the couchbase count index: %s", exc)


def _update_shard(shard_key: str, changes: Changes, now: datetime) -> Flow[None]:
    for attempt in range(INDEX_ATTEMPTS):
        doc: Doc | None = yield Get(shard_key, json=True)
        updated = apply_changes(decode_shard(doc.value if doc else None), changes, now)
        if updated is None:
            return  # nothing to change: no write
        value, expiry = encode_shard(updated), shard_expiry(updated, now)
        if doc is None:
            cas = yield Insert(shard_key, value, expiry, json=True)
        else:
            cas = yield Replace(shard_key, value, doc.cas, expiry, json=True)
        if cas is not None:
            return
        # Jittered backoff, so writers that collided do not collide again in lockstep.
        yield Pause(random.uniform(0, 0.001 * min(attempt + 1, 20)))  # noqa: S311
    logger.warning(
        "gave up updating the couchbase count index after %d conflicts; count may be off "
        "by one session until that session's next write",
        INDEX_ATTEMPTS,
    )
