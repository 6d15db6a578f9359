"""A user's index: one JSON document per user naming the keys of their sessions, and the two
compare-and-set flows that write it (adding a key, pruning keys). No I/O.

The document ``<prefix>user:<sha256 of the user id>`` (see :meth:`~.base.KeyLayout.user_key`)::

    {"format": 1, "sweep": 64, "keys": {"<64 hex>": ["<handle>", <added µs>, <until µs or null>]}}

- *handle*: the session's handle when the entry was added (a record keeps its handle for
  its whole life under one key), so ``revoke`` reads only the sessions it may end;
- *added*: when the entry was written. The key is added *before* its session document is
  written, so an entry whose document is missing may belong to a create or rename still
  on its way: such an entry is dropped only :data:`MISSING_GRACE` after it was added;
- *until*: the latest that session can expire (the login's ``owner_until_us``, or its
  expiry if later; null: no limit). Every write of the index drops the entries whose
  *until* has passed without reading their sessions, and the document's TTL is the
  latest *until* (no TTL while any entry has none).

Entries of sessions that ended (logged out elsewhere, renamed away, expired) are pruned by
the calls that read the sessions anyway (``sessions_of``, ``revoke``, ``revoke_all``,
``delete`` for its own keys); so that an index nobody lists cannot grow without bound (a
session regenerated again and again leaves one entry per regenerate), a login or rename
that finds the index holding *sweep* entries or more reads their sessions in batches
first and drops the stale ones in the same write, then sets *sweep* to twice what is left
(at least :data:`SWEEP_MIN`): a batched read per doubling, amortized.

The session documents are the truth (each bound record names its owner); the index only
has to be a *superset* of a user's live keys. Every entry it lists beyond them costs a
read in ``sessions_of`` and ``revoke_all`` until it is pruned; a live key it missed would
survive a "log out everywhere". So keys are added before the sessions they name exist,
and removed only once they can never name a live session of that user again (see
:mod:`~.users` and ``docs/stores/couchbase.md``).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import NamedTuple

from ormsession.errors import StoreError
from ormsession.expiry import US_PER_SECOND
from ormsession.expiry import now_us as _time_now
from ormsession.repositories.base import Owner, StoredSession
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
)
from ormsession.repositories.couchbase.counters import expiry_for

__all__ = [
    "INDEX_ATTEMPTS",
    "MISSING_GRACE",
    "Entry",
    "add",
    "decode_index",
    "encode_index",
    "index_expiry",
    "prune",
    "unexpired",
    "until_for",
]

logger = logging.getLogger("ormsession")

INDEX_FORMAT = 1
#: Rounds of read + compare-and-set of one user's index (its writers are that user's logins,
#: regenerates and revokes: rarely more than a few at once).
INDEX_ATTEMPTS = 32
#: How long an entry whose session document is missing is kept: longer than the longest
#: operation (``store_timeout`` is at most an hour), so a create or rename that added the
#: key and has not written the document yet is never pruned under its feet.
MISSING_GRACE = timedelta(hours=2)
MISSING_GRACE_US = int(MISSING_GRACE.total_seconds()) * US_PER_SECOND
#: The fewest entries that make a login sweep the index (see the module docstring).
SWEEP_MIN = 64
#: Session documents read per batched round trip.
SESSIONS_BATCH = 1024
_STORAGE_KEY = re.compile(r"[0-9a-f]{64}")


class Entry(NamedTuple):
    """One key of a user's index (see the module docstring)."""

    handle: str
    added_us: int
    until_us: int | None


def until_for(owner_until_us: int | None, expires_us: int) -> int | None:
    """An entry's *until*: the login's limit, or the session's expiry when that is later
    (a store never drops an entry before the session it names can have expired)."""
    return None if owner_until_us is None else max(owner_until_us, expires_us)


def sweep_at(raw: bytes | None) -> int:
    """How many entries make the next login sweep the index (see the module docstring)."""
    try:
        value = json.loads(raw)["sweep"] if raw is not None else SWEEP_MIN
        return max(SWEEP_MIN, int(value))
    except (ValueError, TypeError, KeyError):
        return SWEEP_MIN


def decode_index(raw: bytes | None) -> dict[str, Entry]:
    """``{storage key: Entry}`` of an index document; empty if missing or unreadable."""
    if raw is None:
        return {}
    try:
        document = json.loads(raw)
        if document.get("format") != INDEX_FORMAT:
            raise ValueError("unknown format")
        entries = {}
        for key, (handle, added, until) in document["keys"].items():
            if not _STORAGE_KEY.fullmatch(key) or not isinstance(handle, str):
                raise ValueError("not an entry")
            entries[key] = Entry(handle, int(added), None if until is None else int(until))
        return entries
    except (ValueError, TypeError, KeyError, AttributeError):
        # Its sessions still name their owner; the next login rewrites the document.
        logger.warning("unreadable couchbase user index document; it will be rewritten")
        return {}


def encode_index(entries: Mapping[str, Entry], sweep: int = SWEEP_MIN) -> bytes:
    keys = {key: list(entry) for key, entry in entries.items()}
    document = {"format": INDEX_FORMAT, "sweep": sweep, "keys": keys}
    return json.dumps(document, separators=(",", ":")).encode()


def live_record(doc: Doc | None, user_id: str, now_us: int) -> StoredSession | None:
    """The live record of ``user_id`` in a session document, or None (missing, a moved
    marker, expired, unbound, another user's, not ours)."""
    decoded = decode_record(doc.value) if doc is not None else None
    if decoded is None:
        return None
    record = decoded[0]
    owner = record.owner
    if owner is None or owner.user_id != user_id or record.expires_us <= now_us:
        return None
    return record


def stale(
    entries: Mapping[str, Entry], docs: Mapping[str, Doc], user_id: str, now_us: int
) -> set[str]:
    """The keys (of ``entries``, whose documents are ``docs``: those that exist) that can
    never name a live session of ``user_id`` again: a moved marker, an expired record,
    another user's, a foreign document; or no document for longer than any create or
    rename takes to write one (:data:`MISSING_GRACE`). Keys are fresh 256-bit values, never
    written twice, so none of these comes back."""
    oldest = now_us - MISSING_GRACE_US
    found = set()
    for key, entry in entries.items():
        doc = docs.get(key)
        if doc is None:
            if entry.added_us <= oldest:
                found.add(key)
        elif live_record(doc, user_id, now_us) is None:
            found.add(key)
    return found


def read_sessions(layout: KeyLayout, keys: Collection[str]) -> Flow[dict[str, Doc]]:
    """``{storage key: Doc}`` of the keys' session documents that exist, in batched reads."""
    ids = {layout.document_key(key): key for key in keys}
    names = list(ids)
    found: dict[str, Doc] = {}
    for start in range(0, len(names), SESSIONS_BATCH):
        batch = tuple(names[start : start + SESSIONS_BATCH])
        docs: dict[str, Doc] = yield GetMany(batch, json=False)
        found.update((ids[name], doc) for name, doc in docs.items())
    return found


def unexpired(entries: Mapping[str, Entry], now_us: int) -> dict[str, Entry]:
    """The entries whose session may still be live at ``now_us`` by their *until*."""
    return {k: e for k, e in entries.items() if e.until_us is None or e.until_us > now_us}


def index_expiry(entries: Mapping[str, Entry], now_us: int) -> timedelta | None:
    """The index document's TTL: until its latest entry's *until*; None (no TTL) when an
    entry has no limit. A timedelta, like every TTL here (the 30-day rule)."""
    untils = [entry.until_us for entry in entries.values()]
    if not untils or None in untils:
        return None
    return expiry_for(max(u for u in untils if u is not None), now_us)


# -- the flows that write it -------------------------------------------------------------------
def add(
    layout: KeyLayout,
    owner: Owner,
    key: str,
    until_us: int | None,
    now_us: int,
    *,
    inherit: str | None = None,
) -> Flow[None]:
    """Make ``owner``'s index name ``key`` (with ``owner.handle``), before the session
    document under ``key`` is written; entries past their *until* leave on the way.

    ``inherit``: the key a plain rename moves from; the new entry takes its *until* (the
    login's limit still holds), or no limit when that entry is unknown. A key already
    listed with this handle costs the read only (a rename's retry).
    """
    index_key = layout.user_key(owner.user_id)
    for attempt in range(INDEX_ATTEMPTS):
        doc: Doc | None = yield Get(index_key, json=True)
        entries = decode_index(doc.value if doc is not None else None)
        known = entries.get(key)
        if known is not None and known.handle == owner.handle:
            return
        until = until_us
        if inherit is not None:
            parent = entries.get(inherit)
            until = None if parent is None else until_for(parent.until_us, until_us or 0)
        kept = unexpired(entries, now_us)
        sweep = sweep_at(doc.value if doc is not None else None)
        if len(kept) >= sweep:
            docs = yield from read_sessions(layout, kept)
            for gone in stale(kept, docs, owner.user_id, now_us):
                del kept[gone]
            sweep = max(SWEEP_MIN, 2 * (len(kept) + 1))
        kept[key] = Entry(owner.handle, now_us, until)
        value, expiry = encode_index(kept, sweep), index_expiry(kept, now_us)
        if doc is None:
            cas = yield Insert(index_key, value, expiry, json=True)
        else:
            cas = yield Replace(index_key, value, doc.cas, expiry, json=True)
        if cas is not None:
            return
        yield Pause(_backoff(attempt))
    raise StoreError(f"the index of a user kept racing other writers ({INDEX_ATTEMPTS} rounds)")


def prune(
    layout: KeyLayout,
    user_id: str,
    dead: Collection[str],
    now_us: int | None = None,
    doc: Doc | None = None,
) -> Flow[None]:
    """Drop ``dead`` keys from ``user_id``'s index (and, given ``now_us``, the entries past
    their *until*); ``doc``: the index as already read (else it is read first). A
    conflicting write makes it read again and retry, and an index left empty is removed
    (guarded by its CAS, so a key added meanwhile is never lost).

    Best effort: a failure leaves entries that the next call prunes (it is logged)."""
    index_key = layout.user_key(user_id)
    current = doc
    try:
        if current is None:
            current = yield Get(index_key, json=True)
        for attempt in range(INDEX_ATTEMPTS):
            if current is None:
                return
            entries = decode_index(current.value)
            alive = entries if now_us is None else unexpired(entries, now_us)
            kept = {k: e for k, e in alive.items() if k not in dead}
            if len(kept) == len(entries):
                return
            if kept:
                expiry = index_expiry(kept, now_us if now_us is not None else _time_now())
                value = encode_index(kept, sweep_at(current.value))
                replaced = yield Replace(index_key, value, current.cas, expiry, json=True)
                done = replaced is not None
            else:
                done = yield Remove(index_key, current.cas)
            if done:
                return
            yield Pause(_backoff(attempt))
            current = yield Get(index_key, json=True)
    except StoreError as exc:
        logger.warning("could not prune a couchbase user index (it will be next time): %s", exc)
        return
    logger.warning("gave up pruning a couchbase user index after %d conflicts", INDEX_ATTEMPTS)


def _backoff(attempt: int) -> float:
    # Jittered, so writers that collided do not collide again in lockstep.
    return random.uniform(0, 0.001 * min(attempt + 1, 20))  # noqa: S311
