"""A rename *with data* (a regenerate or login re-sealing the session for the new id) on the
Redis family: the version check is in the step that decides the move (the RENAME script on
plain Redis and Sentinel; PARK between Cluster slots), and the moved record holds the new
bytes, never the old ones.

On Cluster the move takes several commands, so the tests step it command by command
against an update (through the script, and through ``SET ... IFEQ`` on Valkey) and a
delete of the old key, in every order, and fail each step (before it ran, and after it
ran with its reply lost): an update either comes first (the rename then changes nothing)
or fails on the marker (never lost unreported, never overwritten by stale bytes), and a
rolled-back move leaves the old bytes, at their version, under the old key."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis.cluster import RedisCluster

import ormsession
from ormsession.errors import StoreError
from ormsession.expiry import US_PER_SECOND, now_us
from ormsession.repositories.base import Owner, StoredSession
from ormsession.repositories.redis.base import decode_marker, decode_record
from ormsession.repositories.redis.factory import open_store
from ormsession.repositories.redis.repository import RedisRepository
from ormsession.users import new_handle
from tests.redis.helpers import KINDS, routing_client
from tests.redis.test_cluster_store import keys_on_two_masters
from tests.redis.test_users_cluster import STEPS, _failing, every_interleaving
from tests.support.redis_fixtures import url_fixture

pytestmark = pytest.mark.timeout(120)

HOUR = 3600 * US_PER_SECOND
OLD_BYTES = b"sealed-for-the-old-id"
UPDATED = b"sealed-for-the-old-id, updated"
NEW_BYTES = b"sealed-for-the-new-id"
CLUSTERS = ("cluster", "valkey_cluster")


@contextmanager
def _repository(request: pytest.FixtureRequest, kind: str) -> Iterator[RedisRepository]:
    """A sync repository on ``kind``, under the test's key prefix there."""
    url = request.getfixturevalue(url_fixture(kind))
    prefix = request.getfixturevalue(f"{kind}_key_prefix")
    repository = open_store(url, ormsession.load_config(key_prefix=prefix), want_async=False)
    assert isinstance(repository, RedisRepository)
    try:
        yield repository
    finally:
        repository.close()


@pytest.fixture(params=CLUSTERS)
def on_cluster(request: pytest.FixtureRequest) -> Iterator[tuple[RedisCluster, RedisRepository]]:
    """A Cluster (Redis, or Valkey with IFEQ) seen raw, and a repository on it."""
    kind = request.param
    with routing_client(request, kind) as client, _repository(request, kind) as repository:
        yield client, repository


@pytest.fixture(params=KINDS)
def anywhere(request: pytest.FixtureRequest) -> Iterator[RedisRepository]:
    with _repository(request, request.param) as repository:
        yield repository


def keys(cluster: RedisCluster, repository: RedisRepository, where: str) -> tuple[str, str]:
    """Two fresh keys: on two masters, or in one slot (an unbound session then moves by
    the one RENAME script; a bound one still by the cross-slot protocol)."""
    if where == "two-masters":
        return keys_on_two_masters(cluster, repository.layout)
    return "ab" + secrets.token_hex(31), "ab" + secrets.token_hex(31)


def create(repository: RedisRepository, key: str, now: int, owner: Owner | None) -> None:
    record = StoredSession(OLD_BYTES, 1, now, now + HOUR, owner)
    assert repository.create(key, record, now, now + 2 * HOUR if owner else None)


def values(cluster: RedisCluster, repository: RedisRepository, *keys: str) -> list[bytes]:
    """What the servers hold under these sessions' keys and parking keys."""
    layout = repository.layout
    names = [name for key in keys for name in (layout.session(key), layout.parking(key))]
    return [bytes(value) for value in (cluster.get(name) for name in names) if value]


def assert_parking_empty(cluster: RedisCluster, repository: RedisRepository, key: str) -> None:
    assert not cluster.exists(repository.layout.parking(key)), "a parked copy was left"


# -- an update racing the move, in every order -----------------------------------------------
@pytest.mark.parametrize("where", ["two-masters", "one-slot"])
@pytest.mark.parametrize("bound", [False, True], ids=["unbound", "bound"])
def test_an_update_and_a_rename_with_data_in_every_order(
    on_cluster: tuple[RedisCluster, RedisRepository], where: str, bound: bool
) -> None:
    cluster, repository = on_cluster
    now = now_us()

    def scenario() -> Any:
        old, new = keys(cluster, repository, where)
        owner = Owner("u-" + new_handle(), new_handle()) if bound else None
        create(repository, old, now, owner)  # also held for IFEQ (Valkey)

        def check(renamed: bool, updated: int | None) -> None:
            assert renamed == (updated is None), "exactly one of them won the one version"
            assert_parking_empty(cluster, repository, old)
            if renamed:
                moved = repository.read(new, now)
                assert moved is not None and (moved.data, moved.version) == (NEW_BYTES, 1)
                assert moved.owner == owner
                assert repository.read(old, now) is None and repository.moved(old, now)
                stale = [v for v in values(cluster, repository, old, new) if OLD_BYTES in v]
                assert stale == [], "the old bytes survived the move"
            else:
                assert updated == 2
                current = repository.read(old, now)
                assert current is not None and (current.data, current.version) == (UPDATED, 2)
                assert not cluster.exists(repository.layout.session(new))

        renaming = repository.rename_flow(old, new, now + HOUR, now, None, None, NEW_BYTES, 1)
        updating = repository.update_flow(old, UPDATED, now + HOUR, 1, now)
        return renaming, updating, check

    assert every_interleaving(repository, scenario) >= (2 if where == "one-slot" else 4)


@pytest.mark.parametrize("bound", [False, True], ids=["unbound", "bound"])
def test_a_delete_wins_over_a_rename_with_data_in_every_order(
    on_cluster: tuple[RedisCluster, RedisRepository], bound: bool
) -> None:
    cluster, repository = on_cluster
    now = now_us()

    def scenario() -> Any:
        old, new = keys_on_two_masters(cluster, repository.layout)
        owner = Owner("u-" + new_handle(), new_handle()) if bound else None
        create(repository, old, now, owner)

        def check(renamed: bool, _deleted: None) -> None:
            assert repository.read(old, now) is None and repository.read(new, now) is None
            assert values(cluster, repository, old, new) == [], "a destroy leaves nothing"

        renaming = repository.rename_flow(old, new, now + HOUR, now, None, None, NEW_BYTES, 1)
        return renaming, repository.delete_flow(old), check

    assert every_interleaving(repository, scenario) >= 5


# -- a failure at every step -------------------------------------------------------------------
# An unbound session's move files nothing in a user index: it has no USER_ADD step.
FAULTS = [(step, bound) for bound in (False, True) for step in STEPS if bound or step != "user_add"]


@pytest.mark.parametrize(
    ("step", "bound"), FAULTS, ids=[f"{s}-{'bound' if b else 'unbound'}" for s, b in FAULTS]
)
@pytest.mark.parametrize("after_running", [False, True], ids=["not-run", "reply-lost"])
def test_a_failed_step_leaves_the_old_bytes_under_the_old_key_or_nothing(
    on_cluster: tuple[RedisCluster, RedisRepository],
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    after_running: bool,
    bound: bool,
) -> None:
    cluster, repository = on_cluster
    old, new = keys_on_two_masters(cluster, repository.layout)
    now = now_us()
    owner = Owner("u-" + new_handle(), new_handle()) if bound else None
    create(repository, old, now, owner)
    _failing(repository, monkeypatch, step, after_running)
    with pytest.raises(StoreError):
        repository.rename(old, new, now + HOUR, now, None, None, NEW_BYTES, 1)
    monkeypatch.undo()
    assert repository.read(new, now) is None
    assert not cluster.exists(repository.layout.session(new))
    assert_parking_empty(cluster, repository, old)
    kept = repository.read(old, now)
    if kept is not None:  # rolled back: the old id's own bytes, at their version
        assert (kept.data, kept.version, kept.owner) == (OLD_BYTES, 1, owner)
        assert repository.update(old, UPDATED, now + HOUR, 1, now) == 2
    else:  # only when DISCARD ran and its reply was lost: the session is lost, as before
        assert (step, after_running) == ("discard", True)
        left = values(cluster, repository, old, new)
        assert [value for value in left if decode_marker(value) is None] == [], "only a marker"


# -- PARK with a version -----------------------------------------------------------------------
def test_park_with_a_version_decides_and_returns_no_old_data(
    on_cluster: tuple[RedisCluster, RedisRepository],
) -> None:
    cluster, repository = on_cluster
    layout = repository.layout
    now = now_us()
    for owner in (None, Owner("u-" + new_handle(), new_handle(), "agent", "10.0.0.9")):
        old, new = keys_on_two_masters(cluster, layout)
        create(repository, old, now, owner)
        stale = repository.park_script(old, new, now + HOUR, now, expected_version=7)
        assert repository._execute(stale, "rename") is None, "a stale version parks nothing"
        current = repository.read(old, now)
        assert current is not None and current.data == OLD_BYTES
        assert not cluster.exists(layout.parking(old))
        park = repository.park_script(old, new, now + HOUR, now, expected_version=1)
        first, again = repository._execute(park, "rename"), repository._execute(park, "rename")
        assert first is not None and first == again, "repeatable: its reply may be lost"
        head = decode_record(bytes(first))
        assert head is not None and (head.data, head.version, head.owner) == (b"", 1, owner)
        assert OLD_BYTES not in bytes(first), "the old data never leaves the server"
        assert repository.update(old, UPDATED, now + HOUR, 1, now) is None, "parked: no write"
        parked = cluster.get(layout.parking(old))
        assert parked is not None and OLD_BYTES in parked, "the parked copy is the old one"


# -- every topology: the moved record, its owner and the index ---------------------------------
def test_a_bound_session_moves_its_new_bytes_and_its_index_entry(
    anywhere: RedisRepository,
) -> None:
    repository, now = anywhere, now_us()
    who = Owner("u-" + new_handle(), new_handle(), "agent", "10.0.0.9")
    old, new = secrets.token_hex(32), secrets.token_hex(32)
    create(repository, old, now, who)
    assert repository.update(old, UPDATED, now + HOUR, 1, now) == 2
    assert not repository.rename(old, new, now + HOUR, now, None, None, NEW_BYTES, 1)
    assert repository.sessions_of(who.user_id, now)[0].key == old, "a stale rename: no change"
    later = now + 1000
    assert repository.rename(old, new, later + HOUR, later, None, None, NEW_BYTES, 2)
    moved = repository.read(new, later)
    assert moved is not None and (moved.data, moved.version, moved.owner) == (NEW_BYTES, 2, who)
    listed = repository.sessions_of(who.user_id, later)
    assert [(s.key, s.seen_us) for s in listed] == [(new, later)]
    assert repository.update(new, b"next", later + HOUR, 2, later) == 3


def test_a_login_with_data_binds_the_new_bytes_to_the_new_owner(
    anywhere: RedisRepository,
) -> None:
    repository, now = anywhere, now_us()
    first = Owner("u-" + new_handle(), new_handle())
    second = Owner("u-" + new_handle(), new_handle(), "agent", "10.0.0.9")
    for before in (None, first):
        old, new = secrets.token_hex(32), secrets.token_hex(32)
        create(repository, old, now, before)
        moved = repository.rename(old, new, now + HOUR, now, second, now + 2 * HOUR, NEW_BYTES, 1)
        assert moved
        record = repository.read(new, now)
        assert record is not None
        assert (record.data, record.version, record.owner) == (NEW_BYTES, 1, second)
        assert new in [s.key for s in repository.sessions_of(second.user_id, now)]
        assert repository.sessions_of(first.user_id, now) == []
        assert repository.revoke_all(second.user_id, None, now) == 1


def test_a_rename_with_data_needs_the_version_it_was_made_from(
    anywhere: RedisRepository,
) -> None:
    with pytest.raises(ValueError, match="version"):
        anywhere.rename(secrets.token_hex(32), secrets.token_hex(32), 1, 0, None, None, b"x")
