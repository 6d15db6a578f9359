"""Turning redis-py errors into ormsession's, without leaking passwords."""

from __future__ import annotations

import re

from redis import exceptions as redis_errors

from ormsession.errors import StoreError, StoreUnavailableError
from ormsession.urls import scrub

__all__ = ["REDIS_ERRORS", "wrap_redis_error"]

#: What the repositories catch: redis-py's errors, plus the cluster client's exception
#: root, which is not a RedisError.
REDIS_ERRORS: tuple[type[Exception], ...] = (
    redis_errors.RedisError,
    redis_errors.RedisClusterException,
)

# Cannot reach, cannot log in, or the store is between masters: retrying later may work.
_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,  # refused, reset, auth failed, too many connections
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,  # talking to a master that was just demoted
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.SlotNotCoveredError,
)

# What the cluster client raises when no node answers: RedisClusterException itself before
# redis-py 8.2, its subclass RedisClusterUnreachableError since. The base's other subclasses
# are usage errors (cross-slot commands and the like), so the test is by exact type.
_CLUSTER_UNREACHABLE: frozenset[type[Exception]] = frozenset(
    cls
    for cls in (
        redis_errors.RedisClusterException,
        getattr(redis_errors, "RedisClusterUnreachableError", None),
    )
    if cls is not None
)


def wrap_redis_error(
    exc: Exception, *, operation: str, where: str, secrets: tuple[str, ...] = ()
) -> StoreError:
    """A :class:`StoreUnavailableError` for outages, a :class:`StoreError` for the rest;
    the message names the store (``where``, already redacted) and scrubs ``secrets``."""
    message = _no_master(exc) if _is_no_master(exc) else str(exc)
    detail = scrub(f"{type(exc).__name__}: {message}".strip(), *secrets).splitlines()
    text = detail[0] if detail else type(exc).__name__
    if isinstance(exc, redis_errors.AuthenticationError):
        # Unavailable all the same (the app may serve fresh sessions meanwhile), but the
        # fix is the URL's user name or password, not the network.
        return StoreUnavailableError(
            f"session store {where} refused the login during {operation} (authentication "
            f"failed: check the user name and password in the URL): {text}"
        )
    if type(exc) in _CLUSTER_UNREACHABLE or isinstance(exc, _UNAVAILABLE):
        return StoreUnavailableError(
            f"session store {where} unavailable during {operation}: {text}"
        )
    return StoreError(f"session store {where} failed during {operation}: {text}")


def _is_no_master(exc: Exception) -> bool:
    from redis.sentinel import MasterNotFoundError

    return isinstance(exc, MasterNotFoundError)


# In redis-py's "No master found for 'name' : <client repr> - <error>, ...", each sentinel is
# a client repr of a couple of thousand characters: only its address is worth saying.
_SENTINEL_ERROR = re.compile(
    r"<redis\.client\.Redis\(.*?host=([^,>]+),port=(\d+).*?\)>\)>\)> - (.*?)(?=, <redis\.|$)"
)


def _no_master(exc: Exception) -> str:
    """redis-py's "no master" error in one line: the master's name, then each sentinel that
    failed to answer, by address, with its error (one that answered without a master of
    that name is not listed by redis-py)."""
    text = str(exc)
    head = text.split(" : ", 1)[0]
    failures = [
        f"{host}:{port} ({error.removeprefix('network:').rstrip('.')})"
        for host, port, error in _SENTINEL_ERROR.findall(text)
    ]
    if not failures:
        return f"{head} (every sentinel that answered knows no such master)"
    return f"{head}; sentinels that failed to answer: " + "; ".join(failures)
