"""Counting live sessions with expiry-bucket counters: the arithmetic, no I/O.

Couchbase cannot count the documents under a key prefix without the query service, and the
contract's ``count(now)`` judges expiry by a given ``now``. So each session is counted in
one expiry bucket (see :mod:`ormsession.repositories.buckets`: a span of time that holds
its expiry, re-filed only when a write moves the expiry out of it), with a counter document
(``<prefix>count:<level>:<end>``, a memcached counter) holding how many sessions expire
within it. ``count(now)`` adds up the counters of the buckets that end after ``now``: it may
include a session for at most one bucket width after it expired, never misses a live one,
and reads a bounded number of counters (about ``2 x resolution`` per level in use),
whatever the number of sessions stored.

Which levels are in use, and the latest bucket end of each, is in one small JSON document
(``<prefix>count:levels``), so ``count`` knows which counters to read:

    {"format": 1, "levels": {"11": 1767225600, "0": 1767139230}}

See ``docs/stores/couchbase.md`` for the costs and the failure cases.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from datetime import timedelta

from ormsession.expiry import US_PER_SECOND
from ormsession.repositories.buckets import (
    DEFAULT_RESOLUTION,
    MAX_LEVEL,
    MAX_RESOLUTION,
    UNCOUNTED,
    Bucket,
    place,
    target,
)

__all__ = [
    "DEFAULT_RESOLUTION",
    "MAX_RESOLUTION",
    "UNCOUNTED",
    "Bucket",
    "counter_expiry",
    "counter_value",
    "decode_levels",
    "encode_levels",
    "expiry_for",
    "levels_expiry",
    "live_buckets",
    "place",
    "raise_horizon",
    "target",
]

logger = logging.getLogger("ormsession")

US = US_PER_SECOND
#: The most buckets per level ``count`` reads (see :func:`live_buckets`).
MAX_SPAN = 100_000
#: How long counters and the levels document outlive the end of their bucket: app servers'
#: clocks may lag the one that wrote them (and the levels document is pruned by them).
GRACE = timedelta(hours=1)
_GRACE_US = int(GRACE.total_seconds()) * US
LEVELS_FORMAT = 1


def counter_expiry(bucket: Bucket, now_us: int) -> timedelta:
    """The TTL a counter gets when it is created: past its bucket's end by :data:`GRACE`.
    (A counter's TTL is set only when it is created; increments leave it alone.)"""
    return expiry_for(bucket.end * US + _GRACE_US, now_us)


def counter_value(raw: bytes | None) -> int:
    """A counter document's value (an ASCII decimal); 0 for anything else."""
    if raw is None:
        return 0
    text = raw.strip()
    if text.isdigit():
        return int(text)
    logger.warning("a couchbase count document holds something other than a counter")
    return 0


# -- the levels document ---------------------------------------------------------------------
def decode_levels(raw: bytes | None) -> dict[int, int]:
    """``{level: latest bucket end}`` of the levels document (empty if missing or bad)."""
    if raw is None:
        return {}
    try:
        document = json.loads(raw)
        if document.get("format") != LEVELS_FORMAT:
            raise ValueError("unknown format")
        levels = {int(level): int(end) for level, end in document["levels"].items()}
        if any(not 0 <= level <= MAX_LEVEL for level in levels):
            raise ValueError("level out of range")
        return levels
    except (ValueError, TypeError, KeyError, AttributeError):
        # Rewritten by the next write that registers a bucket; until then count is low.
        logger.warning("unreadable couchbase count levels document; it will be rewritten")
        return {}


def encode_levels(levels: Mapping[int, int]) -> bytes:
    document = {"format": LEVELS_FORMAT, "levels": {str(k): v for k, v in sorted(levels.items())}}
    return json.dumps(document, separators=(",", ":")).encode()


def raise_horizon(levels: Mapping[int, int], bucket: Bucket, now_us: int) -> dict[int, int] | None:
    """The levels document after registering ``bucket``, or None when it is covered already.

    Levels whose latest bucket ended more than :data:`GRACE` ago are dropped (a lagging
    clock elsewhere may still count them until then)."""
    if levels.get(bucket.level, 0) >= bucket.end:
        return None
    oldest = now_us - _GRACE_US
    updated = {level: end for level, end in levels.items() if end * US > oldest}
    updated[bucket.level] = bucket.end
    return updated


def levels_expiry(levels: Mapping[int, int], now_us: int) -> timedelta:
    return expiry_for(max(levels.values(), default=0) * US + _GRACE_US, now_us)


def live_buckets(levels: Mapping[int, int], now_us: int) -> Iterator[Bucket]:
    """Every bucket that may count a session live at ``now_us``: per level, those ending
    after ``now_us``, up to the latest registered end. (A bucket ending at or before now
    holds only expiries ``<= now``, which reads call expired.)

    At most :data:`MAX_SPAN` per level, the latest ones: a session is placed at most
    ``2 x resolution`` (<= 2048) buckets ahead of the writer's clock, so only a ``now``
    far in the past could ask for more (and their counters would have expired anyway)."""
    for level, last in sorted(levels.items()):
        width = 1 << level
        first = max((now_us // (width * US) + 1) * width, last - (MAX_SPAN - 1) * width)
        for end in range(first, last + 1, width):
            yield Bucket(level, end)


def expiry_for(expires_us: int, now_us: int) -> timedelta:
    """The TTL for a document (a session's or a counter's) that should go at ``expires_us``,
    as a timedelta.

    Always a timedelta: the SDK turns one above 30 days into the absolute Unix time the
    server expects (raw seconds above 30 days would be read as a date in 1970, and expire
    at once: beego's bug). Whole seconds, rounded up and at least one, because the SDK
    truncates and 0 means "never expire". Reads judge by the stored expiry anyway; the TTL
    only has the server remove the document soon after.
    """
    return timedelta(seconds=max(1, -(-(expires_us - now_us) // US)))
