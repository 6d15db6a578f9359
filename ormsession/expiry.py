"""Time and expiry arithmetic: idle (sliding) and absolute timeouts, and when a touch is due.

Inside the library a moment is an ``int`` of microseconds since the Unix epoch, UTC ("µs"):
exact, cheap to compare and to add, and what the Redis and Couchbase stores keep in their
record headers anyway. The request path compares and adds times on every request; with
aware ``datetime`` objects that cost several allocations and C calls a request, next to a
store round trip that leaves the caches cold. Datetimes stay at the edges: configuration
(``timedelta`` timeouts), an app's own ``clock``, the SQL columns, and what
:class:`~ormsession.session.RequestSession` shows an app.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

from ormsession.errors import ConfigurationError

__all__ = [
    "LONGEST_DURATION",
    "US_PER_SECOND",
    "ExpiryPolicy",
    "from_us",
    "now_us",
    "to_us",
    "us_clock",
    "utcnow",
]

US_PER_SECOND = 1_000_000
#: The longest timeout or cookie lifetime: far past any browser's cookie cap (400 days), and
#: short enough that now plus it is a date every store and ``Expires`` can hold (before year
#: 10000) for centuries.
LONGEST_DURATION = timedelta(days=1000 * 365)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

#: The current time as an aware UTC datetime: the default of the managers' ``clock`` option.
utcnow: Callable[[], datetime] = partial(datetime.now, UTC)


def now_us() -> int:
    """The current time in µs (the system clock ``utcnow`` reads, without a datetime)."""
    return time.time_ns() // 1000


def to_us(moment: datetime) -> int:
    """An aware datetime in µs (exact; a naive one is refused, its zone would be a guess)."""
    if moment.tzinfo is None:
        raise ValueError("ormsession needs aware datetimes (a naive one's zone is unknown)")
    return (moment - _EPOCH) // _MICROSECOND


def from_us(moment_us: int) -> datetime:
    """µs as an aware UTC datetime (exact)."""
    return _EPOCH + moment_us * _MICROSECOND  # int * timedelta: half the cost of timedelta(...)


def us_clock(clock: Callable[[], datetime]) -> Callable[[], int]:
    """The µs clock the policy reads for an app's datetime ``clock``: :func:`now_us` itself
    for the default one (no datetime built on the request path), a conversion otherwise."""
    if clock is utcnow:
        return now_us
    return lambda: to_us(clock())


def _us(span: timedelta) -> int:
    return span // _MICROSECOND


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpiryPolicy:
    """When sessions end, and how often their expiry is pushed back (built by
    :class:`~ormsession.Config` from the options of the same names, which give the defaults).

    - ``idle_timeout``: a session unused this long is gone (sliding; beego's maxLifetime).
    - ``absolute_timeout``: a session older than this is gone however active it is
      (``None`` turns it off). Both are enforced on every read, on every store.
    - ``refresh_ratio``: a request that changes nothing pushes the expiry back only once
      this share of ``idle_timeout`` has passed since the last push, so a read-only request
      usually writes nothing. 0 refreshes on every request.

    The methods take and return µs (see the module docstring).
    """

    idle_timeout: timedelta
    absolute_timeout: timedelta | None
    refresh_ratio: float
    # The timeouts in µs and the touch thresholds, worked out once.
    _idle_us: int = field(init=False, repr=False, compare=False)
    _absolute_us: int | None = field(init=False, repr=False, compare=False)
    #: ``now - expires_at`` below this means no touch is due yet.
    _touch_threshold_us: int = field(init=False, repr=False, compare=False)
    #: The least a touch must push the expiry back to be worth a write.
    _min_gain_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.idle_timeout <= timedelta(0):
            raise ConfigurationError("idle_timeout must be positive")
        if self.absolute_timeout is not None and self.absolute_timeout <= timedelta(0):
            raise ConfigurationError("absolute_timeout must be positive (or None)")
        for name, value in (("idle", self.idle_timeout), ("absolute", self.absolute_timeout)):
            if value is not None and value > LONGEST_DURATION:
                raise ConfigurationError(
                    f"{name}_timeout {value} is longer than {LONGEST_DURATION.days} days (1000 "
                    "years), past which an expiry is no date the stores can hold"
                )
        if not 0.0 <= self.refresh_ratio < 1.0:
            raise ConfigurationError("refresh_ratio must be in [0, 1)")
        absolute = None if self.absolute_timeout is None else _us(self.absolute_timeout)
        object.__setattr__(self, "_idle_us", _us(self.idle_timeout))
        object.__setattr__(self, "_absolute_us", absolute)
        threshold = _us(self.idle_timeout * (self.refresh_ratio - 1))
        object.__setattr__(self, "_touch_threshold_us", threshold)
        object.__setattr__(self, "_min_gain_us", _us(self.idle_timeout * self.refresh_ratio))

    def deadline(self, created_us: int) -> int | None:
        """The absolute end of a session created at ``created_us``."""
        absolute = self._absolute_us
        return None if absolute is None else created_us + absolute

    def expires_at(self, created_us: int, now_us: int) -> int:
        """The expiry to store for activity at ``now_us``: idle window, capped by the deadline."""
        expiry = now_us + self._idle_us
        deadline = self.deadline(created_us)
        return expiry if deadline is None else min(expiry, deadline)

    def is_over(self, created_us: int, expires_us: int, now_us: int) -> bool:
        """True when a stored session has ended by either timeout (the store's own check
        covers the stored expiry; this also applies a deadline shortened since it was stored)."""
        if expires_us <= now_us:
            return True
        # deadline(), inline: every read asks this.
        absolute = self._absolute_us
        return absolute is not None and created_us + absolute <= now_us

    def touch_due(self, created_us: int, expires_us: int, now_us: int) -> bool:
        """Whether pushing the expiry back now gains at least ``refresh_ratio`` of the idle
        window (which also stops useless touches once the absolute deadline caps it)."""
        # Read on every request: one subtraction settles the usual "not yet" case.
        if now_us - expires_us < self._touch_threshold_us:
            return False
        gained = self.expires_at(created_us, now_us) - expires_us
        return gained > 0 and gained >= self._min_gain_us
