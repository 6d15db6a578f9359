"""The Redis store on a three-master Cluster: sessions spread over every master, counts
across them, and renames between masters, including every failure case of the move."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

import ormsession
from ormsession.errors import StoreError, StoreUnavailableError
from ormsession.expiry import US_PER_SECOND, now_us
from ormsession.flows import run
from ormsession.ids import storage_key
from ormsession.repositories.base import StoredSession
from ormsession.repositories.redis import scripts
from ormsession.repositories.redis.base import PARK_TTL_MS, Eval, KeyLayout, encode_marker
from ormsession.repositories.redis.errors import wrap_redis_error
from ormsession.repositories.redis.factory import open_store
from ormsession.repositories.redis.repository import RedisRepository
from tests.manager.test_lifecycle import stored_session
from tests.redis.helpers import node_clients, stored_keys
from tests.support.redis_servers import ClusterTopology, free_port

pytestmark = pytest.mark.timeout(60)

Address = tuple[str, int]


@pytest.fixture
def cluster(cluster_topology: ClusterTopology) -> Iterator[RedisCluster]:
    client = cluster_topology.cluster_client(decode_responses=False)
    yield client
    client.close()


@pytest.fixture
def repository(cluster_url: str, cluster_key_prefix: str) -> Iterator[RedisRepository]:
    repository = open_store(
        cluster_url, ormsession.load_config(key_prefix=cluster_key_prefix), want_async=False
    )
    yield repository
    repository.close()


def _master_of(cluster: RedisCluster, key: str) -> Address:
    node = cluster.get_node_from_key(key)
    return (node.host, node.port)


def keys_on_two_masters(cluster: RedisCluster, layout: KeyLayout) -> tuple[str, str]:
    """Two fresh session keys whose records live on different masters."""
    old = secrets.token_hex(32)
    while True:
        new = secrets.token_hex(32)
        if _master_of(cluster, layout.session(new)) != _master_of(cluster, layout.session(old)):
            return old, new


YEAR = 365 * 86_400 * US_PER_SECOND


def record(data: bytes = b"payload") -> StoredSession:
    now = now_us()
    return StoredSession(data, 1, now, now + YEAR)


# -- spread and count ------------------------------------------------------------------------
def test_sessions_land_on_all_three_masters_and_count_spans_them(
    request: pytest.FixtureRequest, cluster_url: str, cluster_key_prefix: str
) -> None:
    with ormsession.configure(url=cluster_url, key_prefix=cluster_key_prefix) as manager:
        sids = [stored_session(manager, n=n) for n in range(60)]
        assert manager.count() == 60
        with node_clients(request, "cluster") as clients:
            keys = stored_keys(clients, cluster_key_prefix)
        per_node = Counter(k.node for k in keys if k.kind == b"string")
        assert len(per_node) == 3 and sum(per_node.values()) == 60, per_node
        assert len({k.node for k in keys if k.kind == b"zset"}) == 3, "index shards everywhere"
        for sid in sids[:10]:
            manager.destroy(manager.open(sid))
        assert manager.count() == 50


# -- rename between masters ----------------------------------------------------------------
def test_rename_moves_a_session_between_masters(
    cluster: RedisCluster, repository: RedisRepository
) -> None:
    layout = repository.layout
    old, new = keys_on_two_masters(cluster, layout)
    now = now_us()
    assert repository.create(old, record(), now)
    assert repository.update(old, b"v2", record().expires_us, 1, now) == 2
    expires = now + 2 * YEAR
    assert repository.rename(old, new, expires, now)
    assert repository.read(old, now) is None
    moved = repository.read(new, now)
    assert moved is not None and (moved.data, moved.version) == (b"v2", 2)
    assert moved.expires_us == expires
    assert not cluster.exists(layout.parking(old)), "the parked copy is discarded"
    assert cluster.pttl(layout.session(new)) > 0
    assert repository.count(now) == 1


def test_rename_within_one_slot_is_one_atomic_script(
    cluster: RedisCluster, repository: RedisRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = "ab" + secrets.token_hex(31)
    new = "ab" + secrets.token_hex(31)
    now = now_us()
    assert repository.create(old, record(), now)
    run = _recording(repository, monkeypatch)
    assert repository.rename(old, new, record().expires_us, now)
    assert [e.script.name for e in run] == ["rename"]
    assert repository.read(new, now) is not None and repository.read(old, now) is None


def test_regenerate_through_the_manager_crosses_masters(
    cluster: RedisCluster, cluster_url: str, cluster_key_prefix: str
) -> None:
    layout = KeyLayout(cluster_key_prefix)
    crossed = 0
    with ormsession.configure(url=cluster_url, key_prefix=cluster_key_prefix) as manager:
        for n in range(12):
            sid = stored_session(manager, n=n)
            session = manager.open(sid)
            manager.regenerate(session)
            manager.save(session)
            before = _master_of(cluster, layout.session(storage_key(sid)))
            after = _master_of(cluster, layout.session(storage_key(session.id)))
            crossed += before != after
            assert manager.open(sid).is_new
            assert manager.open(session.id)["n"] == n
        assert manager.count() == 12
    assert crossed >= 3, "with three masters most regenerations change master"


# -- every failure of a move between slots ---------------------------------------------------------
def _recording(repository: RedisRepository, monkeypatch: pytest.MonkeyPatch) -> list[Eval]:
    run: list[Eval] = []
    real = repository._execute

    def execute(command: Any, operation: str) -> Any:
        if isinstance(command, Eval):
            run.append(command)
        return real(command, operation)

    monkeypatch.setattr(repository, "_execute", execute)
    return run


def _failing(
    repository: RedisRepository,
    monkeypatch: pytest.MonkeyPatch,
    fails: Callable[[Eval], bool],
    *,
    after_running: bool = False,
) -> None:
    """Make the scripts ``fails`` picks fail as a connection error does: before they run, or
    after (the reply lost on the way back)."""
    real = repository._execute

    def execute(command: Any, operation: str) -> Any:
        if isinstance(command, Eval) and fails(command):
            if after_running:
                real(command, operation)
            lost = redis.ConnectionError("injected failure")
            raise wrap_redis_error(lost, operation=operation, where="cluster") from lost
        return real(command, operation)

    monkeypatch.setattr(repository, "_execute", execute)


@pytest.mark.parametrize("after_running", [False, True], ids=["not-run", "reply-lost"])
def test_a_failed_copy_rolls_the_rename_back(
    cluster: RedisCluster,
    repository: RedisRepository,
    monkeypatch: pytest.MonkeyPatch,
    after_running: bool,
) -> None:
    layout = repository.layout
    old, new = keys_on_two_masters(cluster, layout)
    now = now_us()
    stored = record()
    assert repository.create(old, stored, now)
    _failing(
        repository,
        monkeypatch,
        lambda e: e.script is scripts.CREATE and e.keys[0] == layout.session(new),
        after_running=after_running,
    )
    with pytest.raises(StoreUnavailableError, match="during rename"):
        repository.rename(old, new, now + 2 * YEAR, now)
    restored = repository.read(old, now)
    assert restored is not None and restored.data == stored.data and restored.version == 1
    assert restored.expires_us == stored.expires_us
    assert repository.read(new, now) is None
    assert not cluster.exists(layout.parking(old)) and not cluster.exists(layout.session(new))
    assert cluster.pttl(layout.session(old)) > PARK_TTL_MS, "the original TTL is back"
    assert repository.count(now) == 1


def test_a_lost_park_reply_is_retried_safely(
    cluster: RedisCluster, repository: RedisRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PARK ran but its reply was lost: the roll-back puts the record back where it was.
    layout = repository.layout
    old, new = keys_on_two_masters(cluster, layout)
    now = now_us()
    expires = record().expires_us
    assert repository.create(old, record(), now)
    _failing(repository, monkeypatch, lambda e: e.script is scripts.PARK, after_running=True)
    with pytest.raises(StoreUnavailableError):
        repository.rename(old, new, expires, now)
    monkeypatch.undo()
    assert repository.read(old, now) is not None, "the marker made way for the record"
    assert not cluster.exists(layout.parking(old))
    assert repository.count(now) == 1
    # And PARK itself is repeatable: run twice, it returns the parked record both times...
    park = repository.park_script(old, new, expires, now)
    first, again = repository._execute(park, "rename"), repository._execute(park, "rename")
    assert first is not None and first == again
    assert cluster.get(layout.session(old)) == encode_marker(new, expires, now)
    assert cluster.exists(layout.parking(old))
    # ...but a PARK of the same key towards another one (a racing rename) gets nothing.
    other = secrets.token_hex(32)
    assert repository._execute(repository.park_script(old, other, expires, now), "rename") is None


@pytest.mark.parametrize("after_running", [False, True], ids=["not-run", "reply-lost"])
def test_a_failed_discard_rolls_the_rename_back(
    cluster: RedisCluster,
    repository: RedisRepository,
    monkeypatch: pytest.MonkeyPatch,
    after_running: bool,
) -> None:
    # Whether a destroy came in between cannot be told: the move is undone, never kept.
    layout = repository.layout
    old, new = keys_on_two_masters(cluster, layout)
    now = now_us()
    assert repository.create(old, record(), now)
    _failing(
        repository, monkeypatch, lambda e: e.script is scripts.DISCARD, after_running=after_running
    )
    with pytest.raises(StoreUnavailableError, match="during rename"):
        repository.rename(old, new, record().expires_us, now)
    assert repository.read(new, now) is None and not cluster.exists(layout.session(new))
    assert not cluster.exists(layout.parking(old))
    if after_running:
        # The parked copy was dropped before the reply was lost: nothing to put back. The
        # session is lost (the error says so), not duplicated.
        assert repository.read(old, now) is None
        assert repository.count(now) == 0
    else:
        assert repository.read(old, now) is not None
        assert repository.count(now) == 1


def test_a_retried_copy_whose_first_run_stored_it_completes_the_rename(
    cluster: RedisCluster, repository: RedisRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-py sends a command again after a connection error, which can come after the
    # server ran it: the second CREATE then finds the key taken, by the rename's own copy.
    layout = repository.layout
    old, new = keys_on_two_masters(cluster, layout)
    now = now_us()
    assert repository.create(old, record(b"mine"), now)
    real = repository._execute

    def execute(command: Any, operation: str) -> Any:
        if isinstance(command, Eval) and command.script is scripts.CREATE:
            real(command, operation)
        return real(command, operation)

    monkeypatch.setattr(repository, "_execute", execute)
    assert repository.rename(old, new, record().expires_us, now) is True
    moved = repository.read(new, now)
    assert moved is not None and moved.data == b"mine"
    assert repository.read(old, now) is None and not cluster.exists(layout.parking(old))


def test_a_roll_back_never_restores_a_session_destroyed_meanwhile(
    cluster: RedisCluster, repository: RedisRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A logout between PARK and a CREATE that fails: the roll-back finds nothing to put
    # back (the DELETE took the parked copy with the marker).
    layout = repository.layout
    old, new = keys_on_two_masters(cluster, layout)
    now = now_us()
    assert repository.create(old, record(), now)
    real = repository._execute

    def execute(command: Any, operation: str) -> Any:
        if isinstance(command, Eval) and command.script is scripts.CREATE:
            repository.delete(old)
            lost = redis.ConnectionError("injected failure")
            raise wrap_redis_error(lost, operation=operation, where="cluster") from lost
        return real(command, operation)

    monkeypatch.setattr(repository, "_execute", execute)
    with pytest.raises(StoreUnavailableError):
        repository.rename(old, new, record().expires_us, now)
    monkeypatch.undo()
    for key in (layout.session(old), layout.parking(old), layout.session(new)):
        assert not cluster.exists(key), key
    assert repository.count(now) == 0


@pytest.mark.parametrize("destroyed_after", ["nothing", "park", "create", "discard"])
def test_a_destroy_at_any_step_of_a_move_between_masters_wins(
    cluster: RedisCluster, repository: RedisRepository, destroyed_after: str
) -> None:
    """A logout (delete of the old key) between any two steps of a rename between slots:
    no copy of the session survives anywhere, and a rename that had not finished reports
    that it found no session."""
    layout = repository.layout
    old, new = keys_on_two_masters(cluster, layout)
    now = now_us()
    assert repository.create(old, record(), now)
    if destroyed_after == "nothing":
        repository.delete(old)
    steps: list[str] = []

    def perform(command: Any) -> Any:
        result = repository._execute(command, "rename")
        if isinstance(command, Eval):
            steps.append(command.script.name)
            if command.script.name == destroyed_after:
                repository.delete(old)
        return result

    moved = run(repository.rename_flow(old, new, record().expires_us, now), perform)
    assert moved is (destroyed_after == "discard"), "only a finished rename reports success"
    if destroyed_after != "nothing":
        assert steps[:3] == ["park", "create", "discard"]
    for key in (layout.session(old), layout.parking(old), layout.session(new)):
        assert not cluster.exists(key), key
    assert repository.read(new, now) is None and repository.read(old, now) is None
    assert repository.count(now) == 0


def test_a_failed_roll_back_loses_the_session_but_never_duplicates_it(
    cluster: RedisCluster,
    repository: RedisRepository,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    layout = repository.layout
    old, new = keys_on_two_masters(cluster, layout)
    now = now_us()
    assert repository.create(old, record(), now)
    _failing(repository, monkeypatch, lambda e: e.script.name in {"create", "delete", "unpark"})
    with caplog.at_level(logging.ERROR, logger="ormsession"), pytest.raises(StoreError):
        repository.rename(old, new, record().expires_us, now)
    assert "could not be rolled back" in caplog.text
    assert repository.read(old, now) is None and repository.read(new, now) is None
    assert 0 < cluster.pttl(layout.parking(old)) <= PARK_TTL_MS


def test_an_unreachable_cluster_is_a_typed_error_at_once() -> None:
    url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    start = time.monotonic()
    # redis-py's sync Cluster client maps the slots on construction: configure() fails.
    with pytest.raises(StoreUnavailableError, match="unavailable during start-up"):
        ormsession.configure(url=url, store_timeout=0.5)

    async def first_use() -> None:  # the asyncio client connects on first use: start-up's read
        with pytest.raises(StoreUnavailableError, match="unavailable during read"):
            await ormsession.configure_async(url=url, store_timeout=0.5)

    asyncio.run(first_use())
    assert time.monotonic() - start < 1.0


def test_a_ready_cluster_client_works_and_stays_open(
    cluster: RedisCluster, cluster_key_prefix: str
) -> None:
    with ormsession.configure(client=cluster, key_prefix=cluster_key_prefix) as manager:
        sid = stored_session(manager, n=5)
        assert manager.open(sid)["n"] == 5
        assert manager.count() == 1
    assert cluster.ping() is True
    pools = [node.redis_connection.connection_pool for node in cluster.get_nodes()]
    assert any(c.is_connected for pool in pools for c in pool._available_connections)
