"""64 requests at once on every store: 64 threads on the sync manager, 64 asyncio tasks on
the async one, in three rounds that each start every request together.

- saves: eight sessions, eight requests each, every request writing its own key;
- a login: on each session one request logs in (regenerate) while seven save;
- a logout: on each session one request logs out, one logs in and six save.

Counted, all zero (docs/reliability.md, "Races"): lost updates (a save that did not lose
the race, yet its key is missing from the live session), resurrected sessions (anything of
a session readable after its logout), second live ids, users logged out by a request that
did not log out (a deleting cookie), errors of any kind.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from ormsession.async_manager import AsyncSessionManager
from ormsession.config import Config
from ormsession.manager import SessionManager
from ormsession.session import RequestSession
from tests.support.stores import STORE_TARGETS, open_async_repository, open_store

SESSIONS = 8
PER_SESSION = 8
#: How many times each twin runs the three rounds.
REPEATS = 4
#: A store's rounds, both twins, must end within this (seconds).
TIME_LIMIT = 20.0

#: What the race table (tests/races/conftest.py) shows, per store and twin.
COLUMNS = (
    "requests",
    "saves that lost the race (dropped, no cookie)",
    "lost updates",
    "resurrected sessions",
    "sessions with other than one live id",
    "users logged out by another request",
    "errors",
)
RESULTS: dict[tuple[str, str], Counter[str]] = {}


@dataclass(frozen=True)
class Outcome:
    """What one request did and what its response carried."""

    session: int
    role: str  # "save", "login" or "logout"
    key: str
    lost: bool
    cookie: str | None
    new_id: str
    error: str | None = None


def roles(round_name: str) -> list[str]:
    if round_name == "saves":
        return ["save"] * PER_SESSION
    if round_name == "login":
        return ["login"] + ["save"] * (PER_SESSION - 1)
    return ["logout", "login"] + ["save"] * (PER_SESSION - 2)


def act(role: str, session: RequestSession, key: str) -> None:
    """What the request changes before it saves (a login changes, then regenerates)."""
    if role == "save":
        session[key] = key
    elif role == "login":
        session["user"] = key


class Tally:
    """The counts the module docstring lists, over every round."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def check_round(
        self, round_name: str, tags: list[str], outcomes: list[Outcome], opened: dict[str, Any]
    ) -> None:
        """``tags``: each seeded session's ``tag`` value; ``opened``: what every id the round
        saw opens to afterwards (None: nothing)."""
        self.counts["requests"] += len(outcomes)
        for outcome in outcomes:
            if outcome.role == "save" and outcome.lost:
                self.counts["saves that lost the race (dropped, no cookie)"] += 1
            if outcome.error is not None:
                self.counts["errors"] += 1
                self.counts[f"error: {outcome.error}"] += 1
            if outcome.cookie is None or outcome.role == "logout":
                continue
            deleting = "Max-Age=0" in outcome.cookie
            # A save of an existing session sets no cookie; only the login's new id may
            # replace the browser's (a logout round's fresh, anonymous sessions aside).
            replacing = round_name != "logout" and outcome.role != "login"
            if deleting or replacing:
                self.counts["users logged out by another request"] += 1
        for index, tag in enumerate(tags):
            live = [data for data in opened.values() if data and data.get("tag") == tag]
            if round_name == "logout":
                self.counts["resurrected sessions"] += bool(live)
                continue
            if len(live) != 1:
                self.counts["sessions with other than one live id"] += 1
                continue
            for outcome in outcomes:
                saved = outcome.role == "save" and not outcome.lost and outcome.error is None
                if outcome.session == index and saved and live[0].get(outcome.key) is None:
                    self.counts["lost updates"] += 1

    def problems(self) -> dict[str, int]:
        harmless = ("requests", "saves that lost the race (dropped, no cookie)")
        return {name: n for name, n in self.counts.items() if n and name not in harmless}


def _ids_to_check(sids: list[str], outcomes: list[Outcome]) -> set[str]:
    return set(sids) | {o.new_id for o in outcomes}


# -- threads on the sync manager ------------------------------------------------------------
def sync_request(manager: SessionManager, role: str, sid: str, index: int, key: str) -> Outcome:
    try:
        session = manager.open(sid)
        act(role, session, key)
        if role == "login":
            manager.regenerate(session)
        elif role == "logout":
            manager.destroy(session)
        cookie = manager.save(session)
        return Outcome(index, role, key, session.lost, cookie, session.id)
    except Exception as exc:  # counted, never raised: the tally reports them all
        return Outcome(index, role, key, False, None, sid, f"{type(exc).__name__}: {exc}")


def sync_rounds(manager: SessionManager, tally: Tally) -> None:
    for round_name in ("saves", "login", "logout") * REPEATS:
        sids, tags = [], [f"{round_name}-{n}" for n in range(SESSIONS)]
        for tag in tags:
            seed = manager.open(None)
            seed["tag"] = tag
            manager.save(seed)
            sids.append(seed.id)
        jobs = [
            (role, sids[s], s, f"{round_name}-{s}-{n}")
            for s in range(SESSIONS)
            for n, role in enumerate(roles(round_name))
        ]
        barrier = threading.Barrier(len(jobs), timeout=30)

        def run(job: tuple[str, str, int, str], barrier: threading.Barrier = barrier) -> Outcome:
            barrier.wait()
            return sync_request(manager, *job)

        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            outcomes = list(pool.map(run, jobs))
        opened = {}
        for session_id in _ids_to_check(sids, outcomes):
            session = manager.open(session_id)
            opened[session_id] = None if session.is_new else session.contents()
        tally.check_round(round_name, tags, outcomes, opened)


# -- tasks on the async manager -------------------------------------------------------------
async def async_request(
    manager: AsyncSessionManager, role: str, sid: str, index: int, key: str
) -> Outcome:
    try:
        session = await manager.open(sid)
        act(role, session, key)
        if role == "login":
            await manager.regenerate(session)
        elif role == "logout":
            await manager.destroy(session)
        cookie = await manager.save(session)
        return Outcome(index, role, key, session.lost, cookie, session.id)
    except Exception as exc:  # counted, never raised: the tally reports them all
        return Outcome(index, role, key, False, None, sid, f"{type(exc).__name__}: {exc}")


async def async_rounds(manager: AsyncSessionManager, tally: Tally) -> None:
    for round_name in ("saves", "login", "logout") * REPEATS:
        sids, tags = [], [f"{round_name}-{n}" for n in range(SESSIONS)]
        for tag in tags:
            seed = await manager.open(None)
            seed["tag"] = tag
            await manager.save(seed)
            sids.append(seed.id)
        start = asyncio.Event()

        async def run(
            role: str, sid: str, index: int, key: str, start: asyncio.Event = start
        ) -> Outcome:
            await start.wait()
            return await async_request(manager, role, sid, index, key)

        tasks: list[Awaitable[Outcome]] = [
            run(role, sids[s], s, f"{round_name}-{s}-{n}")
            for s in range(SESSIONS)
            for n, role in enumerate(roles(round_name))
        ]
        gathered = asyncio.gather(*tasks)
        await asyncio.sleep(0)
        start.set()
        outcomes = list(await gathered)
        opened = {}
        for session_id in _ids_to_check(sids, outcomes):
            session = await manager.open(session_id)
            opened[session_id] = None if session.is_new else session.contents()
        tally.check_round(round_name, tags, outcomes, opened)


@pytest.fixture
def config() -> Config:
    # max_attempts: eight writers on one session need at most eight compare-and-sets each.
    return Config(max_attempts=PER_SESSION + 2)


@pytest.mark.parametrize("store", list(STORE_TARGETS))
def test_64_requests_at_once_keep_every_invariant(
    request: pytest.FixtureRequest, store: str, config: Config
) -> None:
    started = time.monotonic()
    threads, tasks = Tally(), Tally()
    with (
        open_store(request, store, "sync") as repository,
        SessionManager(repository, config, owns_repository=False) as manager,
    ):
        sync_rounds(manager, threads)

    async def on_the_loop() -> None:
        repository = open_async_repository(request, store)
        await repository.start()
        try:
            async with AsyncSessionManager(repository, config, owns_repository=False) as manager:
                await async_rounds(manager, tasks)
        finally:
            await repository.close()

    asyncio.run(on_the_loop())
    took = time.monotonic() - started
    RESULTS[(store, "64 threads")] = threads.counts
    RESULTS[(store, "64 asyncio tasks")] = tasks.counts
    assert threads.problems() == {}, f"64 threads on {store}"
    assert tasks.problems() == {}, f"64 asyncio tasks on {store}"
    assert took <= TIME_LIMIT, f"{store}: {took:.1f} s"
