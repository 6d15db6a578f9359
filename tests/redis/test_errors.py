"""How redis-py's errors map onto ormsession's: an outage is retryable, a usage error is not."""

from __future__ import annotations

from typing import Any

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


def free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_no_master_names_each_sentinel_that_failed_in_one_short_line() -> None:
    import ormsession

    first, second = free_ports(2)
    url = f"redis+sentinel://:s3cret@127.0.0.1:{first},127.0.0.1:{second}/mymaster/0"
    with pytest.raises(StoreUnavailableError) as caught:
        ormsession.configure(url=url, store_timeout=1)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 500, message
    assert "No master found for 'mymaster'" in message
    assert f"127.0.0.1:{first} (ConnectionError" in message
    assert f"127.0.0.1:{second} (ConnectionError" in message
    assert "s3cret" not in message and "redis.client" not in message


def test_no_master_of_that_name_at_a_sentinel_that_answered(
    sentinel_url: str, sentinel_topology: Any
) -> None:
    import ormsession

    url = sentinel_url.replace(f"/{sentinel_topology.service_name}", "/nosuchmaster", 1)
    assert url != sentinel_url
    with pytest.raises(StoreUnavailableError) as caught:
        ormsession.configure(url=url, store_timeout=2)
    message = str(caught.value)
    assert "No master found for 'nosuchmaster'" in message and len(message) < 500
    assert "every sentinel that answered knows no such master" in message
