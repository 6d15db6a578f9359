"""The Redis tests' fixtures live in ``tests/support/redis_fixtures.py`` (a root plugin,
so the contract and manager suites can use them too); here only what the Redis tests alone
use."""

from __future__ import annotations

import pytest

from tests.support.redis_fixtures import url_fixture


@pytest.fixture(params=["redis", "valkey"])
def single_node(request: pytest.FixtureRequest) -> tuple[str, str]:
    """``(url, key prefix)`` of one plain node, for a test that runs on Redis and Valkey
    alike: the machine's Redis, or the session's private Valkey node."""
    kind = request.param
    url: str = request.getfixturevalue(url_fixture(kind))
    prefix: str = request.getfixturevalue(f"{kind}_key_prefix")
    return url, prefix
