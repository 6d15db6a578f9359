"""How redis-py's errors map onto ormsession's: an outage is retryable, a usage error is not."""

from __future__ import annotations

import pytest
from redis import exceptions as redis_errors

from ormsession.errors import StoreError, StoreUnavailableError
from ormsession.repositories.redis.errors import wrap_redis_error

_UNREACHABLE = [redis_errors.RedisClusterException("no node answers")]
if hasattr(redis_errors, "RedisClusterUnreachableError"):  # redis-py >= 8.2
    _UNREACHABLE.append(redis_errors.RedisClusterUnreachableError("no node answers"))


@pytest.mark.parametrize("error", _UNREACHABLE, ids=lambda error: type(error).__name__)
def test_a_cluster_no_node_answers_is_unavailable(error: Exception) -> None:
    wrapped = wrap_redis_error(error, operation="read", where="redis+cluster://h:1")
    assert isinstance(wrapped, StoreUnavailableError)
    assert "unavailable during read" in str(wrapped)


@pytest.mark.parametrize(
    "error",
    [redis_errors.CrossSlotTransactionError("keys in two slots"), redis_errors.ResponseError("x")],
    ids=lambda error: type(error).__name__,
)
def test_a_usage_error_is_a_plain_store_error(error: Exception) -> None:
    wrapped = wrap_redis_error(error, operation="update", where="redis://h:1")
    assert type(wrapped) is StoreError
    assert "failed during update" in str(wrapped)


def test_secrets_are_scrubbed_from_the_message() -> None:
    error = redis_errors.ConnectionError("AUTH hunter2 refused")
    wrapped = wrap_redis_error(error, operation="read", where="redis://h:1", secrets=("hunter2",))
    assert isinstance(wrapped, StoreUnavailableError)
    assert "hunter2" not in str(wrapped)
