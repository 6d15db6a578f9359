"""Two requests on one session, interleaved at every store call, on every store.

Request B runs its operation (save a change, log in, or log out) one store call at a time;
before its k-th call, request A runs its whole operation, for every k (and once after B).
Both opened the session before either acted, as two tabs of one browser would; and once B
opens it only after A is done, with the id A's request began with (B's request was on its
way when A's response changed the cookie). The policy's
flows are driven directly (``run`` with a ``perform`` that calls the store): the managers
are one-liners over exactly these flows, and stepping them makes every interleaving
deterministic. The store calls are real, sync and async (the async twin through a facade
that runs each call on one event loop).

The invariants checked after each interleaving (docs/reliability.md, "Races"):

- destroy wins: once either request logged out, nothing of the session opens under any id;
- at most one live id per session (the original, or one request's new one);
- only the request that logged out sends a deleting cookie; a request that lost the race
  sends no Set-Cookie at all, and says so (``session.lost``);
- no lost update: a request that saved without losing the race finds its change in the
  live session afterwards, unless the other one logged out.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from ormsession.config import Config
from ormsession.flows import run
from ormsession.policy import SessionPolicy, StoreCall
from ormsession.repositories.base import SessionRepository
from ormsession.session import RequestSession
from tests.support.stores import open_store, store_params

OPERATIONS = ("save", "login", "logout")


@dataclass
class Request:
    """One request's view: its session, what it did, and what its response carried."""

    name: str
    operation: str
    session: RequestSession
    cookie: str | None = None
    calls: int = 0
    done: bool = False
    wrote: dict[str, Any] = field(default_factory=dict)


def flows_of(policy: SessionPolicy, request: Request) -> Iterator[Any]:
    """The flows of ``request``'s operation, in order; a login changes the session, then
    regenerates it (as apps do), a logout destroys it; each then saves."""
    session = request.session
    if request.operation == "save":
        request.wrote = {f"by {request.name}": request.name}
        session.update(request.wrote)
    elif request.operation == "login":
        request.wrote = {"user": request.name}
        session.update(request.wrote)
        yield policy.regenerate(session)
    else:
        yield policy.destroy(session)
    yield policy.save(session, https=False)


def perform_on(repository: SessionRepository) -> Callable[[StoreCall], Any]:
    return lambda call: getattr(repository, call.method)(*call.args)


def run_request(
    policy: SessionPolicy,
    repository: SessionRepository,
    request: Request,
    before_call: Callable[[int], None] = lambda n: None,
) -> None:
    """Run ``request``'s operation to its end; ``before_call(n)`` runs before its n-th
    store call."""
    store = perform_on(repository)

    def perform(call: StoreCall) -> Any:
        before_call(request.calls)
        request.calls += 1
        return store(call)

    answer = None
    for flow in flows_of(policy, request):
        answer = run(flow, perform)
    request.cookie = answer
    request.done = True


@pytest.fixture(params=store_params())
def store(request: pytest.FixtureRequest) -> Iterator[SessionRepository]:
    name, mode = request.param
    with open_store(request, name, mode) as repository:
        yield repository


def interleave(
    policy: SessionPolicy,
    repository: SessionRepository,
    first: str,
    second: str,
    at: int | None,
) -> tuple[str, Request, Request]:
    """A stored session; requests ``a`` (running ``first``) and ``b`` (running ``second``)
    both open it; ``a`` runs whole before ``b``'s call number ``at``, or after ``b``. With
    ``at`` None, ``b`` opens the session only after ``a`` is done, with the same id."""
    seed = run(policy.open(None), perform_on(repository))
    seed.update({"base": 0})
    run(policy.save(seed, https=False), perform_on(repository))
    sid = seed.id
    a = Request("a", first, run(policy.open(sid), perform_on(repository)))
    if at is None:
        run_request(policy, repository, a)
    b = Request("b", second, run(policy.open(sid), perform_on(repository)))

    def before_call(n: int) -> None:
        if n == at and not a.done:
            run_request(policy, repository, a)

    run_request(policy, repository, b, before_call)
    if not a.done:
        run_request(policy, repository, a)
    return sid, a, b


@pytest.mark.parametrize(("first", "second"), list(itertools.product(OPERATIONS, OPERATIONS)))
def test_every_interleaving_keeps_the_invariants(
    store: SessionRepository, first: str, second: str
) -> None:
    policy = SessionPolicy(Config())
    # a's whole operation before b's store call 0, 1, 2, 3 (or after b), or b opening late
    for at in (0, 1, 2, 3, None):
        sid, a, b = interleave(policy, store, first, second, at)
        where = f"{first} (a), then {second} (b): a ran before b's store call {at}"
        ids = {sid, a.session.id, b.session.id}
        originals = {}  # live sessions holding the original session's data
        for session_id in ids:
            opened = run(policy.open(session_id), perform_on(store))
            if not opened.is_new and "base" in opened.contents():
                originals[session_id] = opened.contents()

        logout = "logout" in (first, second)
        if logout:
            assert originals == {}, f"{where}: a logout was undone: {originals}"
        else:
            assert len(originals) == 1, f"{where}: {len(originals)} live ids for one session"
        for request in (a, b):
            deleting = request.cookie is not None and "Max-Age=0" in request.cookie
            assert deleting == (request.operation == "logout"), (
                f"{where}: request {request.name} ({request.operation}) got {request.cookie!r}"
            )
            if request.session.lost:
                assert request.cookie is None, f"{where}: a lost request set a cookie"
            elif not logout and request.operation != "logout":
                (data,) = originals.values()
                missing = {k: v for k, v in request.wrote.items() if data.get(k) != v}
                assert not missing, f"{where}: {request.name}'s saved change was lost"
