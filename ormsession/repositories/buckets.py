"""Expiry buckets: where a store with native TTLs counts a live session (no I/O).

Counting live sessions exactly means re-filing a session under its new expiry on every
write. Instead, a session is filed under a *bucket*: a span of time that holds its expiry.
Level ``n`` cuts time into spans of ``2**n`` seconds aligned to the Unix epoch (so every
writer names the same buckets); a session gets the level whose width is about
``1/resolution`` of its remaining lifetime when it enters a bucket (at least one second): a
one-day session sits in a 34-minute bucket (resolution 32), a 30-second one in a one-second
bucket. Then:

- a write re-files the session only when its new expiry leaves the bucket it is in, i.e.
  about once per bucket width of activity: most writes touch no count at all;
- a count of the buckets that end after ``now`` may include a session for at most one
  bucket width after it expired (``lifetime / resolution``, at least a second), and never
  misses a live one (a bucket's end is never before the expiries it holds).

Used by the Couchbase store (counter documents per bucket, see
``couchbase/counters.py``) and the Redis store (the bucket's end is the session's score in
its shard's count index, see ``redis/scripts.py``).
"""

from __future__ import annotations

from typing import NamedTuple

from ormsession.errors import ConfigurationError
from ormsession.expiry import US_PER_SECOND

__all__ = [
    "DEFAULT_RESOLUTION",
    "MAX_LEVEL",
    "MAX_RESOLUTION",
    "UNCOUNTED",
    "Bucket",
    "checked_resolution",
    "place",
    "target",
]

#: Buckets per lifetime: a session is counted in a bucket 1/32 to 1/64 of its lifetime wide.
DEFAULT_RESOLUTION = 32
MAX_RESOLUTION = 1024
#: The widest level: 2**25 s (388 days). Lifetimes beyond resolution x 2**26 s share it.
MAX_LEVEL = 25
US = US_PER_SECOND


class Bucket(NamedTuple):
    """Where a session is counted: level ``level``, the span ending at ``end`` (Unix
    seconds, a multiple of ``2**level``). ``end == 0``: not counted anywhere. (A NamedTuple:
    every read decodes one.)"""

    level: int
    end: int

    @property
    def counted(self) -> bool:
        return self.end > 0

    def holds(self, expires_us: int) -> bool:
        """Whether an expiry (µs since the epoch) falls within this bucket."""
        return self.end > 0 and (self.end - (1 << self.level)) * US < expires_us <= self.end * US


UNCOUNTED = Bucket(0, 0)


def checked_resolution(resolution: int) -> int:
    """``resolution`` (buckets per lifetime) if it is in range, else ConfigurationError."""
    if not 1 <= resolution <= MAX_RESOLUTION:
        raise ConfigurationError(f"count_resolution must be 1-{MAX_RESOLUTION}")
    return resolution


def place(expires_us: int, now_us: int, resolution: int) -> Bucket:
    """The bucket for a session expiring at ``expires_us``, written at ``now_us``: the level
    whose width is at most ``lifetime / resolution`` (at least 2**0 = one second), and the
    bucket of that level whose span ``(end - width, end]`` holds the expiry."""
    ratio = (expires_us - now_us) // (resolution * US)
    level = min(MAX_LEVEL, ratio.bit_length() - 1) if ratio > 0 else 0
    width = 1 << level
    end = -(-expires_us // (width * US)) * width  # rounded up: the end is >= the expiry
    return Bucket(level, end) if end > 0 else UNCOUNTED


def target(current: Bucket, expires_us: int, now_us: int, resolution: int) -> Bucket:
    """Where a session written with a new expiry is counted: the bucket it is in while the
    expiry stays within it (nothing to re-file), else a new one."""
    return current if current.holds(expires_us) else place(expires_us, now_us, resolution)
