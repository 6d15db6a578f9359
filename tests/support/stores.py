"""Every store the test suites run against, sync and async, built the way users build them.

A *store target* says how to reach one store for one test: a URL plus settings overrides
(e.g. a per-test key prefix) and a clean-up. The contract suite, the manager suite and the
benchmarks' smoke run are parametrized over :data:`STORE_TARGETS` x {sync, async}; adding a
store means adding one function here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from ormsession.config import Config
from ormsession.repositories.base import AsyncSessionRepository, SessionRepository
from ormsession.repositories.registry import open_store as open_registered_store
from ormsession.schema import upgrade
from ormsession.settings import load_config
from tests.support.couchbase_fixtures import couchbase_target
from tests.support.drivers import DRIVER_TARGETS
from tests.support.redis_fixtures import (
    cluster_target,
    redis_target,
    sentinel_target,
    valkey_cluster_target,
    valkey_sentinel_target,
    valkey_target,
)
from tests.support.sql_fixtures import async_url, sql_url


@dataclass
class StoreTarget:
    """How one test reaches one store."""

    url: str
    async_url: str
    options: dict[str, Any] = field(default_factory=dict)


def _memory(request: pytest.FixtureRequest) -> StoreTarget:
    return StoreTarget("memory://", "memory://")


def _sql(backend: str) -> Callable[[pytest.FixtureRequest], StoreTarget]:
    def target(request: pytest.FixtureRequest) -> StoreTarget:
        url = sql_url(request, backend)
        _empty_session_table(url)
        return StoreTarget(url, async_url(url), {"auto_migrate": False})

    return target


_migrated: set[str] = set()


def _empty_session_table(url: str) -> None:
    """Migrate the test session's private database once, then empty its table per test."""
    if url not in _migrated:
        upgrade(url)
        _migrated.add(url)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM session"))
    finally:
        engine.dispose()


#: name -> how to reach it. Stores added later register here too.
STORE_TARGETS: dict[str, Callable[[pytest.FixtureRequest], StoreTarget]] = {
    "memory": _memory,
    "sqlite": _sql("sqlite"),
    "postgresql": _sql("postgresql"),
    "mysql": _sql("mysql"),
    "couchbase": couchbase_target,
    "redis": redis_target,
    "sentinel": sentinel_target,
    "cluster": cluster_target,
    "valkey": valkey_target,
}
#: Stores reached by name only (``open_store(request, name, mode)``), in no suite's
#: parametrization: Valkey's Sentinel and Cluster, where ``tests/redis`` runs the contract
#: suite and the store behaviour tests (the manager and race suites drive the same
#: repository code on Redis Sentinel and Cluster, and on a Valkey node).
NAMED_TARGETS: dict[str, Callable[[pytest.FixtureRequest], StoreTarget]] = {
    "valkey_sentinel": valkey_sentinel_target,
    "valkey_cluster": valkey_cluster_target,
}
MODES = ("sync", "async")


def store_params(names: list[str] | None = None, modes: tuple[str, ...] = MODES) -> list[Any]:
    """pytest params ``<store>-<mode>`` for every store (or the ones named), in every mode
    (or the ones named)."""
    return [
        pytest.param((name, mode), id=f"{name}-{mode}")
        for name in (names or list(STORE_TARGETS))
        for mode in modes
    ]


class SyncFacade:
    """Drives an async repository from sync test code on one event loop, so a suite's tests
    are written once and run against both twins (the contract suite's own view is
    :class:`ormsession.testing.BlockingRepository`; this one also passes through a store's
    extra methods, which the store suites call)."""

    def __init__(self, repository: AsyncSessionRepository, runner: asyncio.Runner) -> None:
        self.inner = repository
        self._runner = runner
        self.native_ttl = repository.native_ttl

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any) -> Any:
            return self._runner.run(method(*args))

        return call


def open_async_repository(
    request: pytest.FixtureRequest, name: str, **options: Any
) -> AsyncSessionRepository:
    """The async repository of store ``name``, *not started*: whoever runs it awaits
    ``start()`` and ``close()`` on its own loop (``AsyncRepositoryContract`` does)."""
    target = target_for(request, name)
    config = load_config(**(target.options | options))
    repository: AsyncSessionRepository = open_registered_store(
        target.async_url, config, want_async=True
    )
    return repository


@contextmanager
def open_store(
    request: pytest.FixtureRequest, name: str, mode: str, **options: Any
) -> Iterator[SessionRepository]:
    """A repository for store ``name`` in ``mode`` (async ones behind a :class:`SyncFacade`)."""
    if mode == "sync":
        target = target_for(request, name)
        config = load_config(**(target.options | options))
        repository = open_registered_store(target.url, config, want_async=False)
        try:
            yield repository
        finally:
            repository.close()
        return
    with asyncio.Runner() as runner:
        async_repository = open_async_repository(request, name, **options)
        runner.run(async_repository.start())
        facade = SyncFacade(async_repository, runner)
        try:
            yield facade  # type: ignore[misc]
        finally:
            runner.run(async_repository.close())


def target_for(request: pytest.FixtureRequest, name: str) -> StoreTarget:
    """How this test reaches store ``name`` (of STORE_TARGETS, NAMED_TARGETS, or the SQL
    drivers' DRIVER_TARGETS)."""
    return (STORE_TARGETS.get(name) or NAMED_TARGETS.get(name) or DRIVER_TARGETS[name])(request)


class FakeClock:
    """A clock that starts at the real time and moves only when told to."""

    def __init__(self) -> None:
        from ormsession.expiry import utcnow

        self.now = utcnow()

    def __call__(self) -> Any:
        return self.now

    def advance(self, **delta: float) -> None:
        from datetime import timedelta

        self.now += timedelta(**delta)


class ManagerFacade:
    """Drives an ``AsyncSessionManager`` from sync test code (coroutines run on one loop),
    so the manager suite is written once for both twins."""

    def __init__(self, manager: Any, runner: asyncio.Runner) -> None:
        self.inner = manager
        self._runner = runner

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not asyncio.iscoroutinefunction(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._runner.run(attribute(*args, **kwargs))

        return call


@contextmanager
def open_manager(
    request: pytest.FixtureRequest, name: str, mode: str, **options: Any
) -> Iterator[Any]:
    """A manager (sync, or async behind a :class:`ManagerFacade`) on store ``name``.

    ``options`` are :class:`~ormsession.Config` fields (for the manager and the store
    alike), plus the managers' own ``clock=`` and ``session_class=``.
    """
    from ormsession.async_manager import AsyncSessionManager
    from ormsession.manager import SessionManager

    extras = {key: options.pop(key) for key in ("clock", "session_class") if key in options}
    with open_store(request, name, mode, **options) as repository:
        config = Config(**options)
        if mode == "sync":
            with SessionManager(repository, config, owns_repository=False, **extras) as manager:
                yield manager
        else:
            facade: SyncFacade = repository  # type: ignore[assignment]
            manager = AsyncSessionManager(facade.inner, config, owns_repository=False, **extras)
            yield ManagerFacade(manager, facade._runner)


class RecordingRepository:
    """Passes every call through to a repository (sync or async) and records its name."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.native_ttl = inner.native_ttl

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any) -> Any:
            self.calls.append(name)
            return method(*args)

        return call

    def writes(self) -> list[str]:
        return [c for c in self.calls if c in {"create", "update", "touch", "delete", "rename"}]


def record_calls(manager: Any) -> RecordingRepository:
    """Put a :class:`RecordingRepository` between ``manager`` (or its facade) and its store."""
    inner = getattr(manager, "inner", manager)
    recorder = RecordingRepository(inner.repository)
    inner.repository = recorder
    return recorder
