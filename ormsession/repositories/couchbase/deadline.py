"""One deadline per Couchbase operation, across the several key-value calls of its flow.

The SDK bounds each call by its ``kv_timeout``; an operation such as a save (a replace,
then the count counters) makes several calls, and a compare-and-set retry more. So the
repository gives each operation a :class:`Deadline`, and each call the time the operation
has left when that is shorter than the SDK's own bound (passing a per-call timeout costs
the SDK an options merge, so the usual call, started with time to spare, goes without).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from ormsession.errors import StoreUnavailableError

__all__ = ["Deadline", "expired"]

#: A call's own bound may end this much after the deadline before a shorter one is passed.
SLACK = 0.01


class Deadline:
    """The end of one operation: ``timeout`` seconds from now. ``kv_timeout``: the SDK's
    bound on each call (None when unknown: an app's cluster), so a call is given the time
    left only when the SDK's would end later."""

    __slots__ = ("_at", "_kv_timeout")

    def __init__(self, timeout: float, kv_timeout: float | None) -> None:
        self._at = time.monotonic() + timeout
        self._kv_timeout = kv_timeout

    def left(self) -> float:
        return self._at - time.monotonic()

    def call_options(self) -> dict[str, Any]:
        """Keyword arguments for the next SDK call: ``{}`` or a shorter ``timeout``;
        raises ``TimeoutError`` when the operation has no time left."""
        left = self._at - time.monotonic()
        if left <= 0:
            raise TimeoutError("the operation's deadline passed")
        if self._kv_timeout is not None and self._kv_timeout <= left + SLACK:
            return {}
        return {"timeout": timedelta(seconds=left)}


def expired(
    where: str, operation: str, timeout: float, exc: BaseException
) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"session store {where} unavailable during {operation}: no answer within {timeout:g} s "
        f"({type(exc).__name__})"
    )
