"""What ``ormsession doctor`` checks and ``ormsession stats`` reports, store by store.

The repository contract stays small: a store answers these through one *optional*
method, ``diagnostics()``, returning an object with ``checks(config, now_us)`` and
``stats(now_us, sample)`` (:class:`StoreDiagnostics`). The SQL and Redis stores have one
(``repositories/sql/diagnostics.py``, ``repositories/redis/diagnostics.py``); any other
store (Couchbase, memory, a third-party store) gets :class:`BasicDiagnostics`: a probe
read, the live count, and a line saying what it cannot check. Synchronous only: the
command line is.

Nothing here prints a session id, a storage key or a password: checks name kinds of keys
and redacted URLs, never a key.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from ormsession.config import Config
from ormsession.errors import OrmsessionError
from ormsession.repositories.base import SessionRepository

__all__ = [
    "BasicDiagnostics",
    "Check",
    "SizeSummary",
    "StoreDiagnostics",
    "StoreStats",
    "clock_check",
    "diagnostics_of",
    "sessions",
    "summarize_sizes",
]


def sessions(count: int, kind: str = "") -> str:
    """``count`` sessions in words: "1 session", "1,024 live sessions" (``kind="live"``)."""
    return f"{count:,} {kind + ' ' if kind else ''}session" + ("" if count == 1 else "s")


#: How far the store's clock may be from the app's before doctor calls it a problem.
DEFAULT_MAX_SKEW = 2.0


class Check(NamedTuple):
    """One line of ``ormsession doctor``."""

    name: str
    #: True: fine; False: a problem (doctor exits non-zero); None: not checked here.
    ok: bool | None
    detail: str


class SizeSummary(NamedTuple):
    """Session data sizes in bytes (as stored: ciphertext with encryption at rest)."""

    measured: int
    minimum: int
    median: int
    p95: int
    maximum: int
    #: How the sizes were gathered ("every live session", "a sample of ...").
    how: str


class StoreStats(NamedTuple):
    live: int
    sizes: SizeSummary | None
    #: The creation time (µs) of the oldest live session, and how it was found.
    oldest_created_us: int | None
    oldest_how: str


class StoreDiagnostics(Protocol):
    def checks(self, config: Config, now_us: int, max_skew: float) -> list[Check]: ...

    def stats(self, now_us: int, sample: int) -> StoreStats: ...


def diagnostics_of(repository: SessionRepository) -> StoreDiagnostics:
    """The store's own diagnostics, or :class:`BasicDiagnostics`."""
    own = getattr(repository, "diagnostics", None)
    if own is not None:
        found: StoreDiagnostics = own()
        return found
    return BasicDiagnostics(repository)


class BasicDiagnostics:
    """What any store answers through the contract alone."""

    def __init__(self, repository: SessionRepository) -> None:
        self.repository = repository

    def checks(self, config: Config, now_us: int, max_skew: float) -> list[Check]:
        started = time.perf_counter()
        try:
            # A key nobody has (the configure() probe): any store answers it cheaply.
            self.repository.read(secrets.token_hex(32), now_us)
        except OrmsessionError as exc:
            return [Check("store", False, str(exc))]
        took = (time.perf_counter() - started) * 1000
        return [
            Check("store", True, f"answers (a read in {took:.1f} ms)"),
            Check("clock", None, "not checked: this store offers no server clock"),
        ]

    def stats(self, now_us: int, sample: int) -> StoreStats:
        live = self.repository.count(now_us)
        return StoreStats(live, None, None, "not available on this store")


def clock_check(server_seconds: Callable[[], float], max_skew: float) -> Check:
    """Compare ``server_seconds()`` (the store's clock, Unix seconds) with this host's,
    taking the round trip's midpoint as the moment the server read its clock."""
    before = time.time()
    server = server_seconds()
    after = time.time()
    skew = server - (before + after) / 2
    error = (after - before) / 2
    detail = f"the store's clock is {_signed_ms(skew)} this host's (± {error * 1000:.1f} ms)"
    if abs(skew) - error > max_skew:
        return Check(
            "clock",
            False,
            f"{detail}, over the {max_skew:g} s allowed: synchronise the clocks (NTP); "
            "expiry is judged by the app's clock, TTLs by the store's",
        )
    return Check("clock", True, detail)


def _signed_ms(seconds: float) -> str:
    word = "ahead of" if seconds >= 0 else "behind"
    return f"{abs(seconds) * 1000:.1f} ms {word}"


def summarize_sizes(sizes: Sequence[int], how: str) -> SizeSummary | None:
    """min / median / p95 / max (nearest rank) of ``sizes``; None when there are none."""
    if not sizes:
        return None
    ordered = sorted(sizes)

    def rank(share: float) -> int:
        return ordered[max(0, math.ceil(share * len(ordered)) - 1)]

    return SizeSummary(len(ordered), ordered[0], rank(0.5), rank(0.95), ordered[-1], how)


def first_value(reply: Any) -> Any:
    """A cluster client's reply per node (a dict) or a plain reply: one node's."""
    if isinstance(reply, dict):
        return next(iter(reply.values()))
    return reply
