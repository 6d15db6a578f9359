"""Overlapping requests on one session with real threads (sync) and real tasks (async).

Every writer changes a different key; compare-and-set with re-apply of changed keys must
keep every one of them, on every store.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from ormsession.async_manager import AsyncSessionManager
from ormsession.manager import SessionManager
from ormsession.repositories import registry
from ormsession.settings import load_config
from tests.manager.test_lifecycle import cookie_id
from tests.support.stores import STORE_TARGETS, open_store

WRITERS = 8


@pytest.mark.parametrize("store", list(STORE_TARGETS))
def test_eight_threads_setting_different_keys_all_persist(
    request: pytest.FixtureRequest, store: str
) -> None:
    with (
        open_store(request, store, "sync") as repository,
        SessionManager(repository, owns_repository=False) as manager,
    ):
        session = manager.open(None)
        session["start"] = True
        sid = cookie_id(manager.save(session))
        barrier = threading.Barrier(WRITERS)
        errors: list[BaseException] = []

        def request_thread(n: int) -> None:
            try:
                mine = manager.open(sid)
                barrier.wait()  # all have read the same version before anyone writes
                mine[f"key{n}"] = n
                manager.save(mine)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=request_thread, args=(n,)) for n in range(WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        final = dict(manager.open(sid))
        assert final == {"start": True, **{f"key{n}": n for n in range(WRITERS)}}


@pytest.mark.parametrize("store", list(STORE_TARGETS))
def test_eight_concurrent_tasks_setting_different_keys_all_persist(
    request: pytest.FixtureRequest, store: str
) -> None:
    target = STORE_TARGETS[store](request)
    settings = load_config(**target.options)

    async def scenario() -> dict[str, Any]:
        repository = registry.open_store(target.async_url, settings, want_async=True)
        manager = AsyncSessionManager(repository)
        try:
            session = await manager.open(None)
            session["start"] = True
            sid = cookie_id(await manager.save(session))
            sessions = [await manager.open(sid) for _ in range(WRITERS)]
            for n, mine in enumerate(sessions):
                mine[f"key{n}"] = n
            await asyncio.gather(*(manager.save(mine) for mine in sessions))
            return dict(await manager.open(sid))
        finally:
            await manager.close()

    final = asyncio.run(scenario())
    assert final == {"start": True, **{f"key{n}": n for n in range(WRITERS)}}
