"""The contract and manager suites against a REAL Couchbase Server: opt-in.

Set ``ORMSESSION_COUCHBASE_URL`` (e.g. ``couchbase://user:password@cb.example/scratch``;
any option of the store's URL works, such as ``?scope=...&collection=...``) to run every
test of the shipped contract suite (:mod:`ormsession.testing`), ``tests/manager/test_lifecycle.py``
and ``tests/manager/test_bad_input.py`` against it, sync and async, each test under its
own key prefix. Without it this module is skipped: no Couchbase Server can run on the
project's CI machines, so the skip is expected there (it is not a backend that
``ORMSESSION_REQUIRE_BACKENDS`` demands). Use a scratch bucket: the tests leave documents
behind, which expire by their TTLs (hours; the count index an hour after its last entry).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

REAL_URL = os.environ.get("ORMSESSION_COUCHBASE_URL", "")
if not REAL_URL:
    pytest.skip(
        "opt-in: set ORMSESSION_COUCHBASE_URL=couchbase://user:password@host/bucket to run "
        "the contract and manager suites against a real Couchbase Server",
        allow_module_level=True,
    )

from ormsession.async_manager import AsyncSessionManager  # noqa: E402
from ormsession.config import Config  # noqa: E402
from ormsession.manager import SessionManager  # noqa: E402
from ormsession.repositories.base import AsyncSessionRepository, SessionRepository  # noqa: E402
from ormsession.repositories.registry import open_store  # noqa: E402
from ormsession.settings import load_config  # noqa: E402
from ormsession.testing import AsyncRepositoryContract, RepositoryContract  # noqa: E402
from tests.manager.test_bad_input import *  # noqa: E402, F403
from tests.manager.test_lifecycle import *  # noqa: E402, F403
from tests.support.couchbase_fixtures import unique_prefix  # noqa: E402
from tests.support.stores import FakeClock, ManagerFacade, SyncFacade  # noqa: E402


@contextmanager
def open_real_store(mode: str) -> Iterator[Any]:
    settings = load_config(key_prefix=unique_prefix())
    if mode == "sync":
        repository = open_store(REAL_URL, settings, want_async=False)
        try:
            yield repository
        finally:
            repository.close()
        return
    with asyncio.Runner() as runner:
        twin = open_store(REAL_URL, settings, want_async=True)
        runner.run(twin.start())
        try:
            yield SyncFacade(twin, runner)
        finally:
            runner.run(twin.close())


class TestRealServer(RepositoryContract):
    @pytest.fixture
    def repository(self) -> Iterator[SessionRepository]:
        repository = open_store(REAL_URL, load_config(key_prefix=unique_prefix()), want_async=False)
        try:
            yield repository
        finally:
            repository.close()


class TestRealServerAsync(AsyncRepositoryContract):
    @pytest.fixture
    def async_repository(self) -> AsyncSessionRepository:
        store: AsyncSessionRepository = open_store(
            REAL_URL, load_config(key_prefix=unique_prefix()), want_async=True
        )
        return store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sync", "async"])
def make_manager(
    request: pytest.FixtureRequest, clock: FakeClock
) -> Callable[..., AbstractContextManager[Any]]:
    @contextmanager
    def make(**options: Any) -> Iterator[Any]:
        extras = {"clock": options.pop("clock", clock)}
        if "session_class" in options:
            extras["session_class"] = options.pop("session_class")
        config = Config(**options)
        with open_real_store(request.param) as repository:
            if request.param == "sync":
                with SessionManager(repository, config, owns_repository=False, **extras) as manager:
                    yield manager
            else:
                inner = AsyncSessionManager(
                    repository.inner, config, owns_repository=False, **extras
                )
                yield ManagerFacade(inner, repository._runner)

    return make


@pytest.fixture
def manager(make_manager: Callable[..., AbstractContextManager[Any]]) -> Iterator[Any]:
    with make_manager() as manager:
        yield manager
