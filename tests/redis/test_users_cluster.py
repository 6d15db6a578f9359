"""The user index on Cluster: the cross-slot protocol (docs/stores/redis.md, "A user's
sessions"), with a fault injected at every step of a bound session's move, every
interleaving of a move with a revoke or a listing, and a threaded stress run.

The invariant checked throughout: the index is a superset of the user's live sessions
(each one is filed, or reached through a moved marker of a key that is), so revoke_all
never misses one, and a revoke wins over a move in flight (nothing of the session is
readable after both)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

import ormsession
from ormsession.errors import StoreError
from ormsession.expiry import US_PER_SECOND, now_us
from ormsession.flows import Flow
from ormsession.repositories.base import Owner, StoredSession
from ormsession.repositories.redis.base import Eval, decode_marker
from ormsession.repositories.redis.errors import wrap_redis_error
from ormsession.repositories.redis.factory import open_store
from ormsession.repositories.redis.repository import RedisRepository
from ormsession.users import new_handle
from tests.redis.test_cluster_store import keys_on_two_masters
from tests.support.redis_servers import ClusterTopology

pytestmark = pytest.mark.timeout(120)

HOUR = 3600 * US_PER_SECOND


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
    assert isinstance(repository, RedisRepository)
    yield repository
    repository.close()


def user() -> str:
    return "u-" + new_handle()


def bound_session(repository: RedisRepository, key: str, who: Owner, now: int) -> None:
    record = StoredSession(b'{"cart":1}', 1, now, now + HOUR, who)
    assert repository.create(key, record, now, now + 2 * HOUR)


def pair(cluster: RedisCluster, repository: RedisRepository, where: str) -> tuple[str, str]:
    """Two fresh keys: on two masters, or in one slot (a bound session moves by the
    cross-slot protocol even then: its index is elsewhere)."""
    if where == "two-masters":
        return keys_on_two_masters(cluster, repository.layout)
    old = "ab" + secrets.token_hex(31)
    return old, "ab" + secrets.token_hex(31)


def reachable(repository: RedisRepository, cluster: RedisCluster, user_id: str) -> set[str]:
    """The keys the user's index reaches: its entries, and what their markers lead to."""
    reached: set[str] = set()
    for field in cluster.hkeys(repository.layout.user(user_id)):
        key: str | None = field.decode()
        while key is not None and key not in reached:
            reached.add(key)
            value = cluster.get(repository.layout.session(key))
            marker = decode_marker(value) if value is not None else None
            key = marker[0] if marker is not None else None
    return reached


def assert_superset(
    repository: RedisRepository, cluster: RedisCluster, user_id: str, keys: tuple[str, ...]
) -> None:
    now = now_us()
    records = {key: repository.read(key, now) for key in keys}
    live = {
        key
        for key, record in records.items()
        if record is not None and record.owner is not None and record.owner.user_id == user_id
    }
    assert live <= reachable(repository, cluster, user_id), "a live session is not indexed"


def assert_gone(repository: RedisRepository, cluster: RedisCluster, *keys: str) -> None:
    now = now_us()
    for key in keys:
        assert repository.read(key, now) is None, key
        assert not cluster.exists(repository.layout.parking(key)), key


# -- a fault at every step of a bound session's move ---------------------------------------------
STEPS = ["park", "user_add", "create", "discard"]


def _failing(
    repository: RedisRepository, monkeypatch: pytest.MonkeyPatch, step: str, after_running: bool
) -> None:
    real = repository._execute
    failed: list[str] = []

    def execute(command: Any, operation: str) -> Any:
        if isinstance(command, Eval) and command.script.name == step and not failed:
            failed.append(step)
            if after_running:
                real(command, operation)
            lost = redis.ConnectionError("injected failure")
            raise wrap_redis_error(lost, operation=operation, where="cluster") from lost
        return real(command, operation)

    monkeypatch.setattr(repository, "_execute", execute)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("after_running", [False, True], ids=["not-run", "reply-lost"])
@pytest.mark.parametrize("login", [False, True], ids=["regenerate", "login-as-another"])
def test_a_failed_step_never_leaves_a_live_session_out_of_the_index(
    cluster: RedisCluster,
    repository: RedisRepository,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    after_running: bool,
    login: bool,
) -> None:
    first, second = user(), user()
    old, new = keys_on_two_masters(cluster, repository.layout)
    now = now_us()
    bound_session(repository, old, Owner(first, new_handle()), now)
    _failing(repository, monkeypatch, step, after_running)
    to = Owner(second, new_handle()) if login else None
    with pytest.raises(StoreError):
        repository.rename(old, new, now + HOUR, now, to, now + 2 * HOUR if login else None)
    monkeypatch.undo()
    live = [key for key in (old, new) if repository.read(key, now) is not None]
    assert len(live) <= 1, "never two live copies"
    assert live in ([old], []), "a failed rename is rolled back (or the session is lost)"
    for user_id in (first, second):
        assert_superset(repository, cluster, user_id, (old, new))
    assert repository.revoke_all(first, None, now) == len(live)
    assert_gone(repository, cluster, old, new)
    assert repository.sessions_of(first, now) == []
    assert repository.sessions_of(second, now) == []


# -- every interleaving of a move with a revoke or a listing -----------------------------------
class Stepper:
    """A flow advanced one command at a time (``step``), so a test chooses the order."""

    def __init__(self, flow: Flow[Any, Any], perform: Callable[[Any], Any]) -> None:
        self.flow, self.perform = flow, perform
        self.done, self.result, self.steps = False, None, 0
        self._resume(lambda: next(flow))

    def _resume(self, resume: Callable[[], Any]) -> None:
        try:
            self.pending = resume()
        except StopIteration as stop:
            self.done, self.result = True, stop.value

    def step(self) -> None:
        self.steps += 1
        try:
            reply = self.perform(self.pending)
        except Exception as exc:  # thrown into the flow, as flows.run does
            error = exc
            self._resume(lambda: self.flow.throw(error))
        else:
            self._resume(lambda: self.flow.send(reply))

    def finish(self) -> None:
        while not self.done:
            self.step()


Scenario = Callable[[], tuple[Flow[Any, Any], Flow[Any, Any], Callable[[Any, Any], None]]]


def every_interleaving(repository: RedisRepository, scenario: Scenario) -> int:
    """Run two flows in every order of their commands (each order on a fresh setup from
    ``scenario``, which returns the flows and a check of both results); how many orders."""

    def perform(command: Any) -> Any:
        return repository._execute(command, "interleaving")

    orders, pending = 0, [""]
    while pending:
        assert orders < 1000, "the flows' steps must not grow from order to order"
        schedule = pending.pop()
        first, second, check = scenario()
        flows = {"a": Stepper(first, perform), "b": Stepper(second, perform)}
        for name in schedule:
            flows[name].step()
        while not flows["a"].done and not flows["b"].done:
            pending.append(schedule + "b")  # the other branch, explored later
            schedule += "a"
            flows["a"].step()
        flows["a"].finish()
        flows["b"].finish()
        check(flows["a"].result, flows["b"].result)
        orders += 1
    return orders


@pytest.mark.parametrize("where", ["two-masters", "one-slot"])
def test_revoke_all_wins_over_a_regenerate_in_every_order(
    cluster: RedisCluster, repository: RedisRepository, where: str
) -> None:
    now = now_us()

    def scenario() -> Any:  # a user of its own each time: the flows' steps stay the same
        user_id = user()
        old, new = pair(cluster, repository, where)
        bound_session(repository, old, Owner(user_id, new_handle()), now)

        def check(renamed: bool, ended: int) -> None:
            assert ended == 1, "the one session is ended, and counted once"
            assert_gone(repository, cluster, old, new)
            assert repository.sessions_of(user_id, now) == []

        moving = repository.rename_flow(old, new, now + HOUR, now)
        return moving, repository.revoke_flow(user_id, "", None, now), check

    assert every_interleaving(repository, scenario) >= 20


def test_revoke_wins_over_a_relogin_in_every_order(
    cluster: RedisCluster, repository: RedisRepository
) -> None:
    now = now_us()

    def scenario() -> Any:
        user_id = user()
        old, new = keys_on_two_masters(cluster, repository.layout)
        who = Owner(user_id, new_handle())
        bound_session(repository, old, who, now)
        again = who._replace(ip="10.0.0.1")

        def check(logged_in: bool, ended: int) -> None:
            assert ended == 1
            assert_gone(repository, cluster, old, new)

        moving = repository.rename_flow(old, new, now + HOUR, now, again, now + 2 * HOUR)
        return moving, repository.revoke_flow(user_id, who.handle, None, now), check

    assert every_interleaving(repository, scenario) >= 20


def test_a_login_as_another_user_against_the_first_users_revoke_all_in_every_order(
    cluster: RedisCluster, repository: RedisRepository
) -> None:
    """Either the revoke came first (the login finds nothing and fails) or the login did
    (the first user's revoke no longer reaches the session): never both, never neither."""
    now = now_us()

    def scenario() -> Any:
        first, second = user(), user()
        old, new = keys_on_two_masters(cluster, repository.layout)
        bound_session(repository, old, Owner(first, new_handle()), now)

        def check(logged_in: bool, ended: int) -> None:
            assert ended == (0 if logged_in else 1)
            stored = repository.read(new, now)
            assert (stored is not None) == logged_in
            if stored is not None:
                assert stored.owner is not None and stored.owner.user_id == second
                assert [s.key for s in repository.sessions_of(second, now)] == [new]
                assert repository.revoke_all(second, None, now) == 1
            assert_gone(repository, cluster, old, new)

        login = Owner(second, new_handle())
        moving = repository.rename_flow(old, new, now + HOUR, now, login, now + 2 * HOUR)
        return moving, repository.revoke_flow(first, "", None, now), check

    assert every_interleaving(repository, scenario) >= 20


def test_a_listing_during_a_move_never_drops_the_new_key(
    cluster: RedisCluster, repository: RedisRepository
) -> None:
    now = now_us()

    def scenario() -> Any:
        user_id = user()
        old, new = keys_on_two_masters(cluster, repository.layout)
        bound_session(repository, old, Owner(user_id, new_handle()), now)

        def check(renamed: bool, listed: list[Any]) -> None:
            assert renamed is True
            assert [item.key for item in listed] in ([old], [new], [])
            assert new in reachable(repository, cluster, user_id)
            assert [item.key for item in repository.sessions_of(user_id, now)] == [new]
            assert repository.revoke_all(user_id, None, now) == 1
            assert_gone(repository, cluster, old, new)

        moving = repository.rename_flow(old, new, now + HOUR, now)
        return moving, repository.sessions_of_flow(user_id, now), check

    assert every_interleaving(repository, scenario) >= 10


def test_revoke_all_keeps_the_session_a_regenerate_moved_to(
    cluster: RedisCluster, repository: RedisRepository
) -> None:
    """The kept session is often one that regenerated: its old key's marker, still in the
    index, leads to it, and must not end it."""
    user_id, now = user(), now_us()
    old, new = keys_on_two_masters(cluster, repository.layout)
    other = secrets.token_hex(32)
    bound_session(repository, old, Owner(user_id, new_handle()), now)
    bound_session(repository, other, Owner(user_id, new_handle()), now)
    assert repository.rename(old, new, now + HOUR, now)
    assert repository.revoke_all(user_id, new, now) == 1
    assert repository.read(new, now) is not None
    assert repository.read(other, now) is None


# -- threads ----------------------------------------------------------------------------------
def _all_at_once(jobs: list[Callable[[], Any]]) -> None:
    """Run ``jobs`` on threads released together; raise the first error."""
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def call(job: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            job()
        except BaseException as exc:  # pragma: no cover (raised below)
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if errors:
        raise errors[0]


def test_threaded_logins_regenerates_and_revoke_all_leave_nothing(
    cluster: RedisCluster, repository: RedisRepository
) -> None:
    user_id, now = user(), now_us()
    for _ in range(10):
        keys = [secrets.token_hex(32) for _ in range(4)]
        news = [secrets.token_hex(32) for _ in keys]
        for key in keys:
            bound_session(repository, key, Owner(user_id, new_handle()), now)
        jobs: list[Callable[[], Any]] = []
        for number, (key, new) in enumerate(zip(keys, news, strict=True)):
            who = Owner(user_id, new_handle()) if number % 2 else None
            jobs.append(lambda k=key, n=new, w=who: repository.rename(k, n, now + HOUR, now, w))
        jobs.append(lambda: repository.revoke_all(user_id, None, now))
        _all_at_once(jobs)
        assert_gone(repository, cluster, *keys, *news)
        assert repository.sessions_of(user_id, now) == []
