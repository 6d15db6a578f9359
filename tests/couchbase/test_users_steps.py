"""The user index's multi-step protocols, stepped by hand against the test server through
the real SDK: every interleaving of a rename (regenerate or login) with a revoke, and a
crash or a failure between any two steps of every flow that writes the index.

Two documents (the session and the user's index) cannot be written atomically on a KV
node, so each flow orders its steps so that whatever happens between them, the index
still names every live session of its user (a superset), and a revoke still ends every
session it reaches, however a rename in flight is interleaved with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ormsession.errors import StoreError, StoreUnavailableError
from ormsession.expiry import now_us
from ormsession.repositories.couchbase import flows, users
from ormsession.repositories.couchbase.repository import CouchbaseRepository
from tests.couchbase.users_support import (
    HOUR,
    assert_superset,
    bound,
    indexed,
    live_keys,
    new_key,
    new_user,
    owner,
    prefix,
    repository,
    solo_steps,
    stepper,
)
from tests.support.couchbase_server import CouchbaseTestServer
from tests.support.flow_steps import Stepper, interleave, schedules

__all__ = ["prefix", "repository"]  # fixtures


class Race:
    """One rename and one revoke of a session of a fresh user, ready to step."""

    def __init__(
        self, repository: CouchbaseRepository, rename_as: str, revoke: str, sealed: bool
    ) -> None:
        self.repository = repository
        ctx, now = repository.context, now_us()
        self.now = now
        self.user, self.other = new_user(), new_user()
        self.old, self.new = new_key(), new_key()
        self.first = owner(self.user)
        assert repository.create(self.old, bound(now, self.first), now, now + 2 * HOUR)
        login = {
            "plain": None,
            "same user": owner(self.user, self.first.handle, ip="10.0.0.1"),
            "other user": owner(self.other, self.first.handle),
        }[rename_as]
        self.login = login
        until = now + 2 * HOUR if login is not None else None
        # ``sealed``: the rename re-seals the data for the new key (encryption on).
        resealed = (b"re-sealed", 1) if sealed else (None, None)
        renaming = flows.rename(ctx, self.old, self.new, now + HOUR, now, login, until, *resealed)
        self.rename = stepper(repository, renaming, "rename")
        revoking = (
            users.revoke(ctx, self.user, self.first.handle, now)
            if revoke == "revoke"
            else users.revoke_all(ctx, self.user, None, now)
        )
        self.revoke = stepper(repository, revoking, revoke)


RENAMES = ["plain", "same user", "other user"]
REVOKES = ["revoke", "revoke_all"]


@pytest.mark.parametrize("sealed", [False, True], ids=["same-bytes", "re-sealed"])
@pytest.mark.parametrize("revoke", REVOKES)
@pytest.mark.parametrize("rename_as", RENAMES)
def test_a_revoke_wins_over_a_rename_at_every_interleaving(
    couchbase_server: CouchbaseTestServer,
    repository: CouchbaseRepository,
    prefix: str,
    rename_as: str,
    revoke: str,
    sealed: bool,
) -> None:
    def race() -> Race:
        return Race(repository, rename_as, revoke, sealed)

    renames = solo_steps(lambda: race().rename)
    revokes = solo_steps(lambda: race().revoke)
    tried = 0
    for schedule in schedules(renames, revokes):
        run = race()
        interleave(run.rename, run.revoke, schedule)
        tried += 1
        read = repository.read(run.new, run.now)
        assert repository.read(run.old, run.now) is None, schedule
        if rename_as == "other user" and run.rename.result:
            # The login won the race: the session is the other user's now, out of the
            # first user's reach (not through the marker either).
            assert run.revoke.result in (False, 0), schedule
            assert read is not None and read.owner == run.login, schedule
            assert set(indexed(couchbase_server, prefix, run.other)) == {run.new}
        else:
            # The revoke is a destroy: no key of the session is readable afterwards.
            assert run.revoke.result in (True, 1), schedule
            assert read is None, schedule
        assert live_keys(couchbase_server, prefix, run.user, run.now) == set(), schedule
        assert repository.sessions_of(run.user, run.now) == [], schedule
        assert_superset(couchbase_server, prefix, run.user, run.other)
    assert tried >= 20  # at least the 5-by-3 steps' worth of orders


def test_a_create_at_every_interleaving_with_a_revoke_all_or_a_listing(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    ctx = repository.context

    def race(other: str) -> tuple[Stepper, Stepper, str, str]:
        now, user, key = now_us(), new_user(), new_key()
        assert repository.create(new_key(), bound(now, owner(user)), now)
        creating = stepper(repository, flows.create(ctx, key, bound(now, owner(user)), now))
        if other == "revoke_all":
            flow: Any = users.revoke_all(ctx, user, None, now)
        else:
            flow = users.sessions_of(ctx, user, now)
        return creating, stepper(repository, flow), user, key

    for other in ("revoke_all", "sessions_of"):
        creates = solo_steps(lambda: race(other)[0])  # noqa: B023 - used at once
        others = solo_steps(lambda: race(other)[1])  # noqa: B023
        for schedule in schedules(creates, others):
            creating, racing, user, key = race(other)
            interleave(creating, racing, schedule)
            assert creating.result is True
            # Whether or not the racing call saw it, the new session stays reachable.
            assert_superset(couchbase_server, prefix, user)
            if other == "sessions_of":
                assert key in indexed(couchbase_server, prefix, user), schedule
            repository.revoke_all(user, None, now_us())  # ends what the race left
            assert live_keys(couchbase_server, prefix, user, now_us()) == set()


# -- a crash or a failure between any two steps ------------------------------------------
class Scene:
    """A user with a bound session ``old`` (and a second user), and one flow to break."""

    def __init__(self, repository: CouchbaseRepository, kind: str) -> None:
        ctx, now = repository.context, now_us()
        self.user, self.other = new_user(), new_user()
        self.old, self.new = new_key(), new_key()
        who = owner(self.user)
        assert repository.create(self.old, bound(now, who), now, now + 2 * HOUR)
        until = now + 2 * HOUR
        made: dict[str, Callable[[], Any]] = {
            "create": lambda: flows.create(ctx, self.new, bound(now, owner(self.user)), now, until),
            "regenerate": lambda: flows.rename(ctx, self.old, self.new, now + HOUR, now),
            "login": lambda: flows.rename(
                ctx, self.old, self.new, now + HOUR, now, owner(self.user, who.handle), until
            ),
            "login as another user": lambda: flows.rename(
                ctx, self.old, self.new, now + HOUR, now, owner(self.other, who.handle), until
            ),
            # Encryption on: the renames carry the data re-sealed for the new key.
            "re-sealing regenerate": lambda: flows.rename(
                ctx, self.old, self.new, now + HOUR, now, None, None, b"re-sealed", 1
            ),
            "re-sealing login as another user": lambda: flows.rename(
                ctx,
                self.old,
                self.new,
                now + HOUR,
                now,
                owner(self.other, who.handle),
                until,
                b"re-sealed",
                1,
            ),
            "revoke": lambda: users.revoke(ctx, self.user, who.handle, now),
            "revoke_all": lambda: users.revoke_all(ctx, self.user, None, now),
            "sessions_of": lambda: users.sessions_of(ctx, self.user, now),
            "delete": lambda: flows.delete(ctx, self.old),
        }
        self.flow = stepper(repository, made[kind](), kind)


KINDS = [
    "create",
    "regenerate",
    "login",
    "login as another user",
    "re-sealing regenerate",
    "re-sealing login as another user",
    "revoke",
    "revoke_all",
    "sessions_of",
    "delete",
]


def _after_the_break(
    server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str, scene: Scene
) -> None:
    """The index still names every live session, so "log out everywhere" ends them all,
    and listing afterwards shows none."""
    assert_superset(server, prefix, scene.user, scene.other)
    now = now_us()
    for user in (scene.user, scene.other):
        repository.revoke_all(user, None, now)
        assert live_keys(server, prefix, user, now) == set()
        assert repository.sessions_of(user, now) == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_crash_between_any_two_steps_leaves_every_session_reachable(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str, kind: str
) -> None:
    steps = solo_steps(lambda: Scene(repository, kind).flow)
    for crash_after in range(steps):
        scene = Scene(repository, kind)
        for _ in range(crash_after):
            scene.flow.step()
        scene.flow.crash()
        _after_the_break(couchbase_server, repository, prefix, scene)


@pytest.mark.parametrize("applied", [False, True], ids=["unsent", "answer-lost"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_step_leaves_every_session_reachable(
    couchbase_server: CouchbaseTestServer,
    repository: CouchbaseRepository,
    prefix: str,
    kind: str,
    applied: bool,
) -> None:
    steps = solo_steps(lambda: Scene(repository, kind).flow)
    for failing in range(steps):
        scene = Scene(repository, kind)
        for _ in range(failing):
            scene.flow.step()
        failure = StoreUnavailableError("injected: the node stopped answering")
        if applied:
            scene.flow.perform(scene.flow.op)  # it happened; only its answer is lost
        try:
            scene.flow.fail(failure)
            scene.flow.finish()
        except StoreError:
            pass  # the flow gave up: what it left behind is what is checked
        _after_the_break(couchbase_server, repository, prefix, scene)
