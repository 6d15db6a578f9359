"""Rename and delete on the SQL store: flows over single autocommit statements.

Both take several statements, each atomic on its own, with no transaction around them:
that works alike on every dialect, on both execution paths and on an app's engine, and
holds no lock between round trips. Written once as flows (:mod:`ormsession.flows`) that
yield :class:`~.statements.Query` objects; the sync repository runs them with ``run``, the
asyncio one with ``arun``.

**Rename** (regenerate), from ``old`` to a fresh ``new``:

1. ``mark_moved``: the live session under ``old`` becomes a moved marker naming ``new``
   (one ``UPDATE ... WHERE live``). This is the moment the rename happens: of several
   racing renames exactly one finds the row live, and from here on no update, touch or
   second rename can change the session under ``old``, so the copy cannot miss a write.
2. ``copy_moved``: ``INSERT ... SELECT`` the marker's data, version and creation time under
   ``new``. Until the flow returns nobody knows ``new``, so no reader sees two sessions.
3. ``clear_marker``: the marker drops the data (empty data, version 0).

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
"""

from __future__ import annotations

from typing import Any

from ormsession.flows import Flow
from ormsession.repositories.sql.statements import Query, SqlQueries

__all__ = ["delete", "rename"]


def rename(
    queries: SqlQueries, old_key: str, new_key: str, expires_us: int, now_us: int
) -> Flow[Query[Any], bool]:
    """The contract's ``rename`` (see the module docstring)."""
    if not (yield queries.mark_moved(old_key, new_key, expires_us, now_us)):
        return False  # no live session under old_key, or another rename won
    if (yield queries.copy_moved(old_key, new_key)) and not (
        yield queries.clear_marker(old_key, new_key)
    ):
        # A delete removed the marker after the copy was made, and may have looked under
        # new_key before the copy was there: the destroy must win.
        yield queries.delete_record(new_key)
    return True


def delete(queries: SqlQueries, key: str) -> Flow[Query[Any], None]:
    """The contract's ``delete``: the session under ``key``, or the chain of markers from
    ``key`` and the session at its end (see the module docstring)."""
    while True:
        if (yield queries.delete_record(key)):
            return
        found: tuple[str | None] | None = yield queries.moved_to(key)
        if found is None:
            return  # nothing under key (any more)
        (moved_to,) = found
        if moved_to is None:
            continue  # a session under key after all (committed meanwhile): look again
        # Deleted here or by a racing delete, the marker named where the session went:
        # follow it either way (the racing delete may still be on its way there).
        yield queries.delete_marker(key, moved_to)
        key = moved_to
