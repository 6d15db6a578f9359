"""A rename that re-seals the session (``data`` + ``expected_version``: a regenerate or a
login with encryption on), stepped by hand against the test server through the real SDK,
at every interleaving with an update, a touch and a delete of the same session.

The version check is made on the read whose CAS guards the marker, so whatever lands
between that read and the marker makes the marker fail: an update is never lost to the
copy sealed from the state before it, and a destroy is never undone. After every
interleaving the server's documents are searched for every payload: the bytes of a lost
write are nowhere, and the old ciphertext is gone once the rename won.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest

from ormsession.errors import StoreError, StoreUnavailableError
from ormsession.expiry import now_us
from ormsession.repositories.base import StoredSession
from ormsession.repositories.couchbase import flows
from ormsession.repositories.couchbase.repository import CouchbaseRepository
from tests.couchbase.users_support import (
    HOUR,
    documents,
    new_key,
    prefix,
    repository,
    solo_steps,
    stepper,
)
from tests.support.couchbase_server import CouchbaseTestServer
from tests.support.flow_steps import Stepper, interleave, schedules

__all__ = ["prefix", "repository"]  # fixtures

OLD_BYTES = b"sealed-for-the-old-key:"
UPDATED_BYTES = b"sealed-by-a-racing-update:"
RESEALED_BYTES = b"re-sealed-for-the-new-key:"


def holding(server: CouchbaseTestServer, prefix: str, payload: bytes) -> set[bytes]:
    """The ids of this test's documents (sessions, markers, indexes, counters) that hold
    ``payload`` anywhere in their bytes."""
    head = prefix.encode()
    return {
        doc_id
        for doc_id, doc in documents(server).items()
        if doc_id.startswith(head) and payload in doc.value
    }


class Race:
    """A session ``old`` at version 1, a re-sealing rename of it to ``new``, and one other
    flow on ``old``: ``update`` (from version 1), ``touch`` or ``delete``. Each race's
    payloads end in a token of its own, so the documents the other races of the test left
    hold none of them."""

    def __init__(self, repository: CouchbaseRepository, other: str, *, warm: bool) -> None:
        now = now_us()
        self.repository, self.now = repository, now
        self.old, self.new = new_key(), new_key()
        token = secrets.token_hex(8).encode()
        self.old_bytes, self.updated_bytes, self.resealed_bytes = (
            OLD_BYTES + token,
            UPDATED_BYTES + token,
            RESEALED_BYTES + token,
        )
        # A repository of its own for the other flow (another app server), so whether the
        # other flow has a CAS hint of the session is up to the test: ``warm`` gives it one.
        ctx = repository.context
        assert repository.create(self.old, StoredSession(self.old_bytes, 1, now, now + HOUR), now)
        if not warm:
            ctx.cache.pop(self.old)
        made: dict[str, Callable[[], Any]] = {
            "update": lambda: flows.update(ctx, self.old, self.updated_bytes, now + HOUR, 1, now),
            "touch": lambda: flows.touch(ctx, self.old, now + 2 * HOUR, now),
            "delete": lambda: flows.delete(ctx, self.old),
        }
        self.other = stepper(repository, made[other](), other)
        renaming = flows.rename(
            ctx, self.old, self.new, now + HOUR, now, data=self.resealed_bytes, expected_version=1
        )
        self.rename = stepper(repository, renaming, "rename")


def _every_interleaving(
    repository: CouchbaseRepository, other: str, warm: bool
) -> list[tuple[tuple[bool, ...], Race]]:
    renames = solo_steps(lambda: Race(repository, other, warm=warm).rename)
    others = solo_steps(lambda: Race(repository, other, warm=warm).other)
    done = []
    for schedule in schedules(renames, others):
        race = Race(repository, other, warm=warm)
        interleave(race.rename, race.other, schedule)
        done.append((schedule, race))
    assert len(done) >= 4  # (a rename is 3 steps: read, copy, marker; an update 1 or 2)
    return done


@pytest.mark.parametrize("warm", [False, True], ids=["read-first", "cas-hint"])
def test_an_update_and_a_re_sealing_rename_one_wins_at_every_interleaving(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str, warm: bool
) -> None:
    outcomes = set()
    for schedule, race in _every_interleaving(repository, "update", warm):
        updated, renamed = race.other.result, race.rename.result
        assert (updated is None) == renamed, schedule
        outcomes.add(renamed)
        old = repository.read(race.old, race.now)
        new = repository.read(race.new, race.now)
        if renamed:
            assert old is None and repository.moved(race.old, race.now), schedule
            assert new is not None and (new.data, new.version) == (race.resealed_bytes, 1)
        else:
            # The update won: the rename changed nothing (no marker, no copy), and the
            # caller, told False, re-reads and re-seals the updated data.
            assert new is None and not repository.moved(race.old, race.now), schedule
            assert old is not None and (old.data, old.version) == (race.updated_bytes, 2)
        assert holding(couchbase_server, prefix, race.old_bytes) == set(), schedule
        lost = race.updated_bytes if renamed else race.resealed_bytes
        assert holding(couchbase_server, prefix, lost) == set(), schedule
    assert outcomes == {True, False}  # both orders were reached


def test_a_touch_never_stops_a_re_sealing_rename(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    for schedule, race in _every_interleaving(repository, "touch", warm=False):
        # A touch moves the CAS but not the version: the rename reads again and wins.
        assert race.rename.result is True, schedule
        new = repository.read(race.new, race.now)
        assert new is not None and (new.data, new.version) == (race.resealed_bytes, 1), schedule
        assert repository.read(race.old, race.now) is None, schedule
        assert holding(couchbase_server, prefix, race.old_bytes) == set(), schedule


def test_a_delete_wins_over_a_re_sealing_rename_at_every_interleaving(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    for schedule, race in _every_interleaving(repository, "delete", warm=True):
        assert repository.read(race.old, race.now) is None, schedule
        assert repository.read(race.new, race.now) is None, schedule
        for payload in (race.old_bytes, race.resealed_bytes):
            assert holding(couchbase_server, prefix, payload) == set(), schedule


def test_a_stale_version_writes_nothing_at_all(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    now, old, new = now_us(), new_key(), new_key()
    assert repository.create(old, StoredSession(OLD_BYTES, 1, now, now + HOUR), now)
    assert repository.update(old, UPDATED_BYTES, now + HOUR, 1, now) == 2
    before = documents(couchbase_server)
    renaming = stepper(
        repository,
        flows.rename(repository.context, old, new, now + HOUR, now, None, None, RESEALED_BYTES, 1),
    )
    assert renaming.finish() is False
    assert renaming.steps == 1  # the read: no count, no copy, no marker
    assert documents(couchbase_server) == before


def _break(race: Stepper, after: int, how: str) -> None:
    for _ in range(after):
        race.step()
    if how == "crash":
        race.crash()
        return
    if how == "answer-lost":
        race.perform(race.op)
    try:
        race.fail(StoreUnavailableError("injected: the node stopped answering"))
        race.finish()
    except StoreError:
        pass  # the flow gave up: what it left behind is what is checked


@pytest.mark.parametrize("how", ["crash", "unsent", "answer-lost"])
def test_a_break_between_any_two_steps_leaves_one_readable_session(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str, how: str
) -> None:
    """Two documents cannot be written atomically: a rename broken between the copy and
    the marker leaves both keys readable (the old one with its old bytes, until its TTL),
    never neither; each holds bytes sealed for its own key, never the other's."""

    def race() -> Race:
        return Race(repository, "touch", warm=False)

    for after in range(solo_steps(lambda: race().rename)):
        scene = race()
        _break(scene.rename, after, how)
        old = repository.read(scene.old, scene.now)
        new = repository.read(scene.new, scene.now)
        assert old is not None or new is not None, after
        assert old is None or old.data == scene.old_bytes, after
        assert new is None or (new.data, new.version) == (scene.resealed_bytes, 1), after
        if old is None:
            assert holding(couchbase_server, prefix, scene.old_bytes) == set(), after
