"""The shipped contract suite on Valkey's Sentinel and Cluster, sync and async.

A Valkey node is a store target of every suite (``valkey`` in ``tests/support/stores.py``);
Valkey's Sentinel and Cluster topologies cost a few seconds each to start, so here only the
contract suite runs on them (and ``test_store_behaviour.py``, through ``KINDS``). Test ids
name the topology: ``TestSyncValkeyTopologies::test_...[valkey_cluster]``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ormsession.repositories.base import AsyncSessionRepository, SessionRepository
from ormsession.testing import AsyncRepositoryContract, RepositoryContract
from tests.support.stores import NAMED_TARGETS, open_async_repository, open_store

TOPOLOGIES = list(NAMED_TARGETS)


class TestSyncValkeyTopologies(RepositoryContract):
    @pytest.fixture(params=TOPOLOGIES)
    def repository(self, request: pytest.FixtureRequest) -> Iterator[SessionRepository]:
        with open_store(request, request.param, "sync") as repository:
            yield repository


class TestAsyncValkeyTopologies(AsyncRepositoryContract):
    @pytest.fixture(params=TOPOLOGIES)
    def async_repository(self, request: pytest.FixtureRequest) -> AsyncSessionRepository:
        return open_async_repository(request, request.param)
