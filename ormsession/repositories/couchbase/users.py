"""A user's sessions on Couchbase, as sans-I/O flows: listing, revoking one, revoking all.

Each reads the user's index (:mod:`~.index`), then the session documents it names: those
are the truth, since a bound record names its owner. The index may name more than the
user's live sessions (an entry added by a create or rename that failed or has not written
its document yet, a key renamed away, a session expired or deleted); what each call finds
is pruned from it afterwards, guarded by the index's CAS.

Revoking is a destroy, and wins over a rename in flight the way ``delete`` does: it
removes a record guarded by the CAS it read, and follows moved markers to where the
session went. A rename commits by replacing the old record with its marker, guarded by
the CAS *it* read, so either the revoke removed the old record first (the rename's
replace fails and it removes its copy) or the rename committed first (the revoke finds
the marker and ends the copy). Unlike ``delete``, it follows a marker only to a record
of the same user (and handle, for ``revoke``): after a login as someone else, the first
user's revoke must not reach the session through the marker it left. Markers themselves
are left to expire: they hold no data, and they keep a planted id from being reused.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

from ormsession.errors import StoreError
from ormsession.repositories.base import OwnedSession, Owner
from ormsession.repositories.couchbase import index
from ormsession.repositories.couchbase.base import (
    Doc,
    Flow,
    Get,
    Remove,
    decode_marker,
    decode_record,
    decode_seen,
)
from ormsession.repositories.couchbase.flows import (
    CAS_ATTEMPTS,
    Context,
    decrement,
)

__all__ = ["revoke", "revoke_all", "sessions_of"]

#: "Not read yet", for a document a batched read did not fetch.
_UNREAD: Any = object()


class State(enum.Enum):
    """What became of an index entry's key, for pruning."""

    #: No document: pruned only :data:`~.index.MISSING_GRACE` after the entry was added.
    MISSING = "missing"
    #: Never again a live session of this user: a marker, an expired record, another
    #: user's, a foreign document, or a record this call removed. Pruned now.
    GONE = "gone"
    #: A live session of the user, left alone (``revoke`` of another handle, the kept one).
    KEPT = "kept"


class _Ended(NamedTuple):
    """The outcome of ending what one key leads to."""

    state: State  # of the key itself
    ended: Owner | None  # the owner of the live record removed down the chain, if any


def sessions_of(ctx: Context, user_id: str, now_us: int) -> Flow[list[OwnedSession]]:
    """The index, then its keys' documents in batched reads; then the prune."""
    index_doc: Doc | None = yield Get(ctx.layout.user_key(user_id), json=True)
    if index_doc is None:
        return []
    entries = index.decode_index(index_doc.value)
    docs = yield from index.read_sessions(ctx.layout, entries)
    listed: list[OwnedSession] = []
    for key in entries:
        doc = docs.get(key)
        record = index.live_record(doc, user_id, now_us)
        if doc is not None and record is not None and record.owner is not None:
            seen = decode_seen(doc.value or b"")
            listed.append(
                OwnedSession(key, record.owner, record.created_us, seen, record.expires_us)
            )
    dead = index.stale(entries, docs, user_id, now_us)
    yield from index.prune(ctx.layout, user_id, dead, now_us, index_doc)
    return listed


def revoke(ctx: Context, user_id: str, handle: str, now_us: int) -> Flow[bool]:
    """End the user's session named by ``handle`` (its index entries: one, or two while a
    rename of it is on its way), following markers; whether a live one ended."""
    index_doc: Doc | None = yield Get(ctx.layout.user_key(user_id), json=True)
    if index_doc is None:
        return False
    entries = index.decode_index(index_doc.value)
    named = {key: entry for key, entry in entries.items() if entry.handle == handle}
    states: dict[str, State] = {}
    ended = False
    for key in named:
        outcome = yield from _end_chain(ctx, key, user_id, handle, None, _UNREAD, now_us)
        states[key] = outcome.state
        ended = ended or outcome.ended is not None
    yield from index.prune(ctx.layout, user_id, _prunable(named, states, now_us), now_us, index_doc)
    return ended


def revoke_all(ctx: Context, user_id: str, keep_key: str | None, now_us: int) -> Flow[int]:
    """End every session of the user but the one under ``keep_key``: the index, its
    keys' documents in batched reads, a CAS-guarded remove of each live one (markers
    followed), then the prune. How many sessions ended (by handle: a session caught
    between a rename's copy and its marker has two records)."""
    index_doc: Doc | None = yield Get(ctx.layout.user_key(user_id), json=True)
    if index_doc is None:
        return 0
    entries = index.decode_index(index_doc.value)
    others = {key: entry for key, entry in entries.items() if key != keep_key}
    docs = yield from index.read_sessions(ctx.layout, others)
    states: dict[str, State] = {}
    ended: set[str] = set()
    for key in others:
        outcome = yield from _end_chain(ctx, key, user_id, None, keep_key, docs.get(key), now_us)
        states[key] = outcome.state
        if outcome.ended is not None:
            ended.add(outcome.ended.handle)
    yield from index.prune(
        ctx.layout, user_id, _prunable(others, states, now_us), now_us, index_doc
    )
    return len(ended)


# -- helpers ---------------------------------------------------------------------------------
def _prunable(entries: dict[str, index.Entry], states: dict[str, State], now_us: int) -> set[str]:
    """The keys to drop from the index: those that can never name a live session of
    the user again, and those missing for longer than any create or rename takes."""
    oldest = now_us - index.MISSING_GRACE_US
    return {
        key
        for key, state in states.items()
        if state is State.GONE or (state is State.MISSING and entries[key].added_us <= oldest)
    }


def _end_chain(
    ctx: Context,
    key: str,
    user_id: str,
    handle: str | None,
    spare: str | None,
    first: Doc | None,
    now_us: int,
) -> Flow[_Ended]:
    """End the user's record under ``key``, or where the markers from ``key`` lead (never
    ``spare``, never another user's record). ``first``: the document already read for
    ``key`` (:data:`_UNREAD`: read it)."""
    state: State | None = None
    ended: Owner | None = None
    seen = {key}
    current: str | None = key
    doc = first
    while current is not None:
        step_state, next_key, removed = yield from _end_one(
            ctx, current, user_id, handle, doc, now_us
        )
        state = state or step_state
        ended = ended or removed
        doc = _UNREAD
        if next_key is None or next_key in seen or next_key == spare:
            break
        seen.add(next_key)
        current = next_key
    assert state is not None
    return _Ended(state, ended)


def _end_one(
    ctx: Context,
    key: str,
    user_id: str,
    handle: str | None,
    doc: Doc | None,
    now_us: int,
) -> Flow[tuple[State, str | None, Owner | None]]:
    """Remove the user's record under ``key``, guarded by the CAS read (read again when it
    changed meanwhile): ``(what the key is now, the key a marker there names, the owner
    of the live record removed)``."""
    doc_key = ctx.layout.document_key(key)
    ctx.cache.pop(key)  # whatever it held is about to change
    for _ in range(CAS_ATTEMPTS):
        if doc is _UNREAD:
            doc = yield Get(doc_key)
        if doc is None:
            return State.MISSING, None, None
        marker = decode_marker(doc.value)
        if marker is not None:
            return State.GONE, marker.to, None
        decoded = decode_record(doc.value)
        if decoded is None:
            return State.GONE, None, None
        record, bucket = decoded
        owner = record.owner
        if owner is None or owner.user_id != user_id:
            return State.GONE, None, None  # another user's (a login moved it): not ours
        if handle is not None and owner.handle != handle:
            return State.KEPT, None, None
        if (yield Remove(doc_key, doc.cas)):
            yield from decrement(ctx, bucket)
            return State.GONE, None, owner if record.expires_us > now_us else None
        doc = _UNREAD  # written meanwhile (a save, or a rename's marker): look again
    raise StoreError(f"revoke of session {key[:8]}… kept racing other writers; giving up")
