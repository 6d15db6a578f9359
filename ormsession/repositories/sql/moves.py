"""Rename, delete and revoke on the SQL store: flows over single autocommit statements.

Each takes several statements, each atomic on its own, with no transaction around them:
that works alike on every dialect, on both execution paths and on an app's engine, and
holds no lock between round trips. Written once as flows (:mod:`ormsession.flows`) that
yield :class:`~.statements.Query` objects; the sync repository runs them with ``run``, the
asyncio one with ``arun``.

**Rename** (regenerate), from ``old`` to a fresh ``new``:

1. ``mark_moved``: the live session under ``old`` becomes a moved marker naming ``new``
   (one ``UPDATE ... WHERE live``). This is the moment the rename happens: of several
   racing renames exactly one finds the row live, and from here on no update, touch or
   second rename can change the session under ``old``, so the copy cannot miss a write.
   A login (a rename with an owner) writes the new owner into the marker here, in the
   same statement.
2. ``copy_moved``: ``INSERT ... SELECT`` the marker's data, version, creation time and
   owner under ``new``. Until the flow returns nobody knows ``new``, so no reader sees two
   sessions.
3. ``clear_marker``: the marker drops the data (empty data, version 0) and its owner.

**Rename with data** (a regenerate or login under encryption at rest: ``data`` is the
session sealed anew for ``new``'s key, made from ``expected_version``), the same three steps:

1. ``mark_moved`` also requires ``version = :expected_version`` in its ``WHERE``, and sets
   the data to empty bytes: the version check is part of the statement that decides the
   rename, and the old bytes leave the row in it (the version stays, for the copy).
2. ``copy_moved`` inserts the given bytes (a bound parameter) with the marker's version,
   creation time, expiry and owner: nothing of the old bytes is read or copied.
3. ``clear_marker`` as above.

An update of ``old`` racing it, made from the same version, and what each order gives:

- committed before step 1: the version moved on, so the mark matches no row and the rename
  returns False with nothing changed (the manager reads the session again and re-seals);
- after step 1: the row is a marker, which no update's ``WHERE live`` matches, so the update
  fails (its request meets the rename as any request that raced a regenerate does) and the
  copy writes the rename's bytes over no accepted write;
- waiting for the mark's row lock (PostgreSQL, MariaDB): PostgreSQL re-checks the ``WHERE``
  on the row the mark committed, InnoDB reads its latest version: either way a marker, and
  the update fails; a mark waiting for an update's lock likewise sees the new version and
  matches nothing. SQLite runs one writer at a time: one of the two orders above.

A touch racing it changes no version: before step 1 both succeed, after it the touch fails.
Deletes and revokes race it exactly as they race a plain rename (below): the steps that
find, follow and clear the marker are the same, and whatever the interleaving no row keeps
the old bytes once step 1 has run.

A delete of ``old`` may come in anywhere. Before step 1, the rename finds no live row and
returns False. After it, the delete removes the marker and follows it to ``new``; if it got
there before the copy was committed it found nothing there, but then step 2 finds the
marker gone and copies nothing, or step 3 finds it gone and the rename deletes its own
copy. Either way the destroy wins, and the rename
returns True (it did happen, before the destroy), so the caller learns of the destroy as
any request does, when its next write finds nothing.

**Delete** of ``key``, following markers: delete the session under ``key``; if there was
none (none at all, or a marker: a rename that held the row's lock turned it into one, and
PostgreSQL re-checks a row it waited for as the rename left it), look at what is there. A
marker is deleted (only while it still names what was seen), and the delete goes on with
the key it named, even when a racing delete removed the marker first. A session there
after all was committed after the first statement looked: look again. Chains only grow at
their end, under keys nobody knew before, so the loop ends.

Rename's last step covers the one window the delete cannot: on PostgreSQL the copy's
``INSERT ... SELECT`` reads the marker from a snapshot taken when it started, so it may
still make the copy after a delete removed the marker and found nothing under ``new``.

**Revoke** (``revoke`` and ``revoke_all``): one ``SELECT`` of the user's rows in the
(user, expiry) index, then the delete above from each key found. The index holds the
user's sessions and the markers of their renames *in flight* (between steps 1 and 3: a
marker keeps the owner until the copy carries it). So a revoke whose ``SELECT`` runs
anywhere inside a rename still reaches the session:

- before step 1, it finds the row under ``old``; by the time it deletes, that may be a
  marker, which the delete follows to ``new``;
- between steps 1 and 2, it finds only the marker and follows it; the copy then finds
  the marker gone and copies nothing (or step 3 does, and the rename deletes its copy);
- between steps 2 and 3, it finds both (one session: counted once);
- after step 3, it finds the copy under ``new``; the cleared marker is no longer in the
  index, and nothing needs it.

A login as another user (step 1 with an owner) puts the *new* owner in the marker: from
that statement on the previous owner's revoke cannot find the session, not even through
the marker (which lives as long as the session), and the new owner's follows the marker
while the copy is on its way. A revoke that found the row before the login's step 1 still
ends it: the destroy came first, and wins, as it does against a plain rename.

Each session found counts as ended when the revoke's own delete removed a row of it (a
concurrent logout that got there first counts it, not the revoke). Expired rows are not
looked at (gc takes them), so the cost is one index range per call, never a scan.

One case is not covered: a rename whose process died between steps 2 and 3 leaves an
uncleared marker in its user's index until it expires. A revoke of that user follows it,
down the chain, even if the session was meanwhile logged in as someone else.
"""

from __future__ import annotations

from typing import Any

from ormsession.flows import Flow
from ormsession.repositories.base import Owner
from ormsession.repositories.sql.statements import Query, SqlQueries

__all__ = ["delete", "rename", "revoke"]


def rename(
    queries: SqlQueries,
    old_key: str,
    new_key: str,
    expires_us: int,
    now_us: int,
    owner: Owner | None = None,
    data: bytes | None = None,
    expected_version: int | None = None,
) -> Flow[Query[Any], bool]:
    """The contract's ``rename`` (see the module docstring); with ``data``, the moved
    session holds ``data``, and the rename happens only at ``expected_version``."""
    resealed = data is not None
    mark = queries.mark_moved(
        old_key, new_key, expires_us, now_us, owner, expected_version, resealed=resealed
    )
    if not (yield mark):
        # No live session under old_key, another rename won, or (with data) a write came
        # in first: nothing changed.
        return False
    if (yield queries.copy_moved(old_key, new_key, data)) and not (
        yield queries.clear_marker(old_key, new_key)
    ):
        # A delete removed the marker after the copy was made, and may have looked under
        # new_key before the copy was there: the destroy must win.
        yield queries.delete_record(new_key)
    return True


def delete(queries: SqlQueries, key: str) -> Flow[Query[Any], bool]:
    """The contract's ``delete``: the session under ``key``, or the chain of markers from
    ``key`` and the session at its end (see the module docstring). Whether this delete
    removed a row (a racing one may have removed them all first)."""
    removed = False
    while True:
        if (yield queries.delete_record(key)):
            return True
        found: tuple[str | None] | None = yield queries.moved_to(key)
        if found is None:
            return removed  # nothing under key (any more)
        (moved_to,) = found
        if moved_to is None:
            continue  # a session under key after all (committed meanwhile): look again
        # Deleted here or by a racing delete, the marker named where the session went:
        # follow it either way (the racing delete may still be on its way there).
        removed = (yield queries.delete_marker(key, moved_to)) or removed
        key = moved_to


def revoke(
    queries: SqlQueries,
    operation: str,
    user_id: str,
    handle: str | None,
    keep_key: str | None,
    now_us: int,
) -> Flow[Query[Any], int]:
    """``revoke`` (with ``handle``) and ``revoke_all`` (without): end the user's sessions
    but the one under ``keep_key``; how many this call ended (see the module docstring)."""
    found = yield queries.owned_keys(operation, user_id, handle, now_us)
    # One session is the row under its key and the marker of a rename in flight to it.
    sessions: dict[str, list[str]] = {}
    for key, moved_to in found:
        sessions.setdefault(moved_to or key, []).append(key)
    ended = 0
    for session, keys in sessions.items():
        if keep_key is not None and (keep_key == session or keep_key in keys):
            continue
        removed = False
        for key in keys:
            removed = (yield from delete(queries, key)) or removed
        ended += removed
    return ended
