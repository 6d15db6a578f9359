"""Expiry arithmetic: idle (sliding) and absolute timeouts, and when a touch is due."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

from ormsession.errors import ConfigurationError

__all__ = ["ExpiryPolicy", "utcnow"]


#: The current time, timezone-aware UTC (the only clock the library reads). A partial, not
#: a function: it is read twice on every request, and a Python frame costs more than that.
utcnow: Callable[[], datetime] = partial(datetime.now, UTC)


@dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    """When sessions end, and how often their expiry is pushed back.

    - ``idle_timeout``: a session unused this long is gone (sliding; beego's maxLifetime).
    - ``absolute_timeout``: a session older than this is gone however active it is
      (``None`` turns it off). Both are enforced on every read, on every store.
    - ``refresh_ratio``: a request that changes nothing pushes the expiry back only once
      this share of ``idle_timeout`` has passed since the last push, so a read-only request
      usually writes nothing. 0 refreshes on every request.
    """

    idle_timeout: timedelta = timedelta(days=1)
    absolute_timeout: timedelta | None = timedelta(days=30)
    refresh_ratio: float = 0.1
    #: ``now - expires_at`` below this means no touch is due yet (worked out once).
    _touch_threshold: timedelta = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.idle_timeout <= timedelta(0):
            raise ConfigurationError("idle_timeout must be positive")
        if self.absolute_timeout is not None and self.absolute_timeout <= timedelta(0):
            raise ConfigurationError("absolute_timeout must be positive (or None)")
        if not 0.0 <= self.refresh_ratio < 1.0:
            raise ConfigurationError("refresh_ratio must be in [0, 1)")
        threshold = self.idle_timeout * (self.refresh_ratio - 1)
        object.__setattr__(self, "_touch_threshold", threshold)

    def deadline(self, created_at: datetime) -> datetime | None:
        """The absolute end of a session created at ``created_at``."""
        if self.absolute_timeout is None:
            return None
        return created_at + self.absolute_timeout

    def expires_at(self, created_at: datetime, now: datetime) -> datetime:
        """The expiry to store for activity at ``now``: idle window, capped by the deadline."""
        expiry = now + self.idle_timeout
        deadline = self.deadline(created_at)
        return expiry if deadline is None else min(expiry, deadline)

    def is_over(self, created_at: datetime, expires_at: datetime, now: datetime) -> bool:
        """True when a stored session has ended by either timeout (the store's own check
        covers the stored expiry; this also applies a deadline shortened since it was stored)."""
        if expires_at <= now:
            return True
        deadline = self.deadline(created_at)
        return deadline is not None and deadline <= now

    def touch_due(self, created_at: datetime, expires_at: datetime, now: datetime) -> bool:
        """Whether pushing the expiry back now gains at least ``refresh_ratio`` of the idle
        window (which also stops useless touches once the absolute deadline caps it)."""
        # Read on every request: one subtraction settles the usual "not yet" case.
        if now - expires_at < self._touch_threshold:
            return False
        gained = self.expires_at(created_at, now) - expires_at
        return gained > timedelta(0) and gained >= self.idle_timeout * self.refresh_ratio
