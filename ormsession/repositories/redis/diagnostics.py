"""``doctor`` and ``stats`` on the Redis family (see :mod:`ormsession.diagnostics`).

Checks: the server answers (``PING``), its clock (``TIME``) is near the app's, and a
``SCAN`` sample of the keys under the prefix all have a TTL: a key without one never
expires (written by hand, restored from a dump without TTLs, or by a foreign tool). A
user's index without a TTL is expected only with ``absolute_timeout=None`` (see
docs/stores/redis.md, A user's sessions). Key names are never printed (they hold
storage keys): only their kinds.

Stats: the live count (the count index, as ``manager.count()``); sizes and the oldest
session from a ``SCAN`` sample of session keys (``GET`` of each, pipelined). ``SCAN``
walks the keyspace a page (``COUNT``) at a time, never blocking the server, and stops once
the sample is full: on a server where the prefix's keys are few among many others it may
walk the whole keyspace to fill it (an admin command's cost, never a request's).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ormsession.config import Config
from ormsession.diagnostics import (
    Check,
    StoreStats,
    clock_check,
    first_value,
    sessions,
    summarize_sizes,
)
from ormsession.errors import OrmsessionError
from ormsession.repositories.redis.base import decode_record
from ormsession.repositories.redis.clients import RAW
from ormsession.repositories.redis.errors import REDIS_ERRORS

if TYPE_CHECKING:
    from ormsession.repositories.redis.repository import RedisRepository

__all__ = ["RedisDiagnostics"]

#: Keys asked per SCAN call.
SCAN_PAGE = 1000
#: Keys whose TTL doctor checks.
TTL_SAMPLE = 1000


class RedisDiagnostics:
    def __init__(self, repository: RedisRepository) -> None:
        self.repository = repository
        self.client = repository.client
        self.prefix = repository.key_prefix
        escaped = re.escape(self.prefix)
        self._kinds = (
            ("session", re.compile(escaped + r"\{[0-9a-f]{2}\}:[0-9a-f]{64}")),
            ("count index", re.compile(escaped + r"\{[0-9a-f]{2}\}:index")),
            ("parked session", re.compile(escaped + r"\{[0-9a-f]{2}\}:moving:[0-9a-f]{64}")),
            ("user index", re.compile(escaped + r"user:[0-9a-f]{64}")),
        )

    def checks(self, config: Config, now_us: int, max_skew: float) -> list[Check]:
        started = time.perf_counter()
        try:
            self._call(lambda: self.client.ping())
        except OrmsessionError as exc:
            return [Check("store", False, str(exc))]
        took = (time.perf_counter() - started) * 1000
        return [
            Check("store", True, f"answers (PING in {took:.1f} ms)"),
            self._clock(max_skew),
            self._ttls(config),
        ]

    def _clock(self, max_skew: float) -> Check:
        def server_seconds() -> float:
            seconds, micros = first_value(self._call(lambda: self.client.time()))
            return int(seconds) + int(micros) / 1e6

        try:
            return clock_check(server_seconds, max_skew)
        except OrmsessionError as exc:
            return Check("clock", False, f"cannot read the server's clock: {exc}")

    def _ttls(self, config: Config) -> Check:
        try:
            keys = list(self._scan(TTL_SAMPLE))
            ttls = self._pipelined(keys, lambda pipe, key: pipe.pttl(key))
        except OrmsessionError as exc:
            return Check("ttl", False, f"cannot sample the keys: {exc}")
        index_may_persist = config.absolute_timeout is None
        missing: Counter[str] = Counter()
        for key, ttl in zip(keys, ttls, strict=True):
            kind = self._kind(key)
            if int(ttl) == -1 and not (kind == "user index" and index_may_persist):
                missing[kind] += 1
        where = f"under {self.prefix!r}"
        if not keys:
            return Check("ttl", True, f"no keys {where} yet")
        if missing:
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(missing.items()))
            return Check(
                "ttl",
                False,
                f"{sum(missing.values())} of {len(keys)} sampled keys {where} have no TTL "
                f"({kinds}): they never expire; find them with redis-cli --scan and "
                "TTL, and delete or EXPIRE them",
            )
        return Check("ttl", True, f"all {len(keys)} sampled keys {where} have a TTL")

    def _kind(self, key: str) -> str:
        for kind, pattern in self._kinds:
            if pattern.fullmatch(key):
                return kind
        return "unknown"

    def stats(self, now_us: int, sample: int) -> StoreStats:
        live = self.repository.count(now_us)
        session = self._kinds[0][1]
        keys = list(self._scan(sample, lambda key: session.fullmatch(key) is not None))
        values = self._pipelined(keys, lambda pipe, key: pipe.execute_command("GET", key, **RAW))
        sizes, created = [], []
        for value in values:
            record = decode_record(value) if isinstance(value, bytes) else None
            if record is not None and record.expires_us > now_us:  # markers are not sessions
                sizes.append(len(record.data))
                created.append(record.created_us)
        how = f"a SCAN sample of {sessions(len(sizes))}"
        return StoreStats(
            live,
            summarize_sizes(sizes, how),
            min(created) if created else None,
            f"the oldest in {how}" if len(sizes) < live else "exact: every session sampled",
        )

    # -- plumbing ----------------------------------------------------------------------------
    def _scan(self, limit: int, wanted: Any = None) -> Iterator[str]:
        """Up to ``limit`` key names under the prefix (every master of a Cluster)."""
        found = 0
        keys = self._call(lambda: self.client.scan_iter(match=self.prefix + "*", count=SCAN_PAGE))
        try:
            for raw in keys:
                key = raw.decode() if isinstance(raw, bytes) else str(raw)
                if wanted is None or wanted(key):
                    yield key
                    found += 1
                if found >= limit:
                    return
        except REDIS_ERRORS as exc:
            raise self.repository._wrap(exc, "scan") from exc

    def _pipelined(self, keys: list[str], add: Any) -> list[Any]:
        return self._call(lambda: self.repository._pipelined(keys, add)) if keys else []

    def _call(self, call: Any) -> Any:
        try:
            return call()
        except REDIS_ERRORS as exc:
            raise self.repository._wrap(exc, "doctor") from exc
