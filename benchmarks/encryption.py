"""What encryption at rest costs a request: the same manager on the in-process store, with
``encrypt=True`` and ``encrypt=False``, in interleaved rounds; the cost is the median of the
per-round differences (µs per request) with its 95% interval. The in-process store does no
I/O, so the difference is all the sealing does (key derivation, AES-GCM), and it adds the
same microseconds to a request on any store."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.requests import SEED
from benchmarks.timing import Settings, calibrate, median_interval, run_rounds, timed
from ormsession import Config, SessionManager
from ormsession.repositories.memory import MemoryRepository

#: The issue's budget: sealing may add at most this much to a request.
ENCRYPTION_LIMIT_US = 10.0


@dataclass(frozen=True)
class EncryptionCost:
    operation: str
    encrypted_us: float
    plain_us: float
    #: Median of the per-round differences, and its 95% interval (µs per request).
    cost_us: float
    cost_low_us: float
    cost_high_us: float
    rounds: int

    @property
    def passed(self) -> bool:
        # As the ratio targets: a failure only when the whole interval is over the limit.
        return self.cost_low_us <= ENCRYPTION_LIMIT_US

    def line(self) -> str:
        return (
            f"encryption {self.operation}: +{self.cost_us:.1f} µs a request (95% CI "
            f"{self.cost_low_us:.1f} to {self.cost_high_us:.1f}; limit {ENCRYPTION_LIMIT_US:g} µs)"
        )


def requests_of(manager: SessionManager) -> dict[str, Callable[[], object]]:
    """One request of each kind that sealing changes, each on its own stored session."""

    def stored_session() -> str:
        session = manager.open(None)
        session.update(SEED)
        manager.save(session)
        return session.id

    stored_id = stored_session()
    # A login moves the session to a new id: each request carries the id the last one set.
    logged_in = [stored_session()]

    def read_only() -> None:
        s = manager.open(stored_id)
        _ = s["user_id"]
        manager.save(s)

    def write() -> None:
        s = manager.open(stored_id)
        s["visits"] = s.get("visits", 0) + 1
        manager.save(s)

    def new_session() -> None:
        s = manager.open(None)
        s.update(SEED)
        manager.save(s)

    def login() -> None:
        s = manager.open(logged_in[0])
        manager.regenerate(s)
        manager.save(s)
        logged_in[0] = s.id

    return {
        "read-only request": read_only,
        "write request": write,
        "new session": new_session,
        "login (regenerate)": login,
    }


def measure(settings: Settings) -> list[EncryptionCost]:
    managers = {
        name: SessionManager(MemoryRepository(), Config(url="memory://", encrypt=encrypt))
        for name, encrypt in (("encrypted", True), ("plain", False))
    }
    requests = {name: requests_of(manager) for name, manager in managers.items()}
    costs = []
    for operation in requests["plain"]:
        series: dict[str, Any] = {name: timed(requests[name][operation]) for name in managers}
        ops = calibrate(series["plain"], settings)
        per_op = run_rounds(series, rounds=settings.rounds, ops=ops, warmup_ops=settings.warmup_ops)
        diffs = [(a - b) / 1000 for a, b in zip(per_op["encrypted"], per_op["plain"], strict=True)]
        low, high = median_interval(diffs)
        costs.append(
            EncryptionCost(
                operation,
                statistics.median(per_op["encrypted"]) / 1000,
                statistics.median(per_op["plain"]) / 1000,
                statistics.median(diffs),
                low,
                high,
                len(diffs),
            )
        )
    return costs
