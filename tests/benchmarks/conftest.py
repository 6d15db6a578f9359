"""Fixtures the benchmark tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.stores import StoreEnv, StoreUnavailableError, open_store
from tests.support.backends import backend_missing


@pytest.fixture
def redis_env() -> Iterator[StoreEnv]:
    """The benchmarks' plain Redis store: its own key prefix, whose keys go at the end."""
    try:
        with open_store("redis") as env:
            yield env
    except StoreUnavailableError as exc:
        backend_missing(str(exc))
