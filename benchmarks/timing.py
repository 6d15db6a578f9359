"""Interleaved rounds: ormsession and its floor take turns, so drift and noise hit both. A
*series* runs ``n`` operations and returns the nanoseconds they took; each round runs every
series once with the same ``n``, in an order that changes from round to round. A comparison
is the median of the per-round ratios (paired: a slow moment slows both sides of a round),
with its interquartile range and a distribution-free 95% interval of that median."""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: Runs ``n`` operations, returns the elapsed nanoseconds.
OpRunner = Callable[[int], int]


@dataclass(frozen=True)
class Settings:
    rounds: int = 31
    #: The full requests carry the targets: the median of 91 rounds has an interval ~0.6 as
    #: wide as 31's (a request's per-round ratios spread over ±5% on a shared VM).
    request_rounds: int = 91
    #: Aim for rounds of about this long per series (``n`` is calibrated on the floor).
    round_seconds: float = 0.05
    min_ops: int = 5
    max_ops: int = 2000
    warmup_ops: int = 20


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b``: medians per operation (µs) and the paired ratio a/b."""

    a_us: float
    b_us: float
    ratio: float
    low: float  # first quartile of the per-round ratios
    high: float  # third quartile
    rounds: int
    ops: int
    ci_low: float  # the 95% confidence interval of ``ratio``
    ci_high: float


def timed(operation: Callable[[], object]) -> OpRunner:
    """A series from a zero-argument operation."""

    def run(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            operation()
        return time.perf_counter_ns() - start

    return run


def calibrate(series: OpRunner, settings: Settings) -> int:
    """How many operations make one round last about ``settings.round_seconds``."""
    series(settings.warmup_ops)
    probe = max(settings.min_ops, 5)
    per_op = series(probe) / probe
    wanted = int(settings.round_seconds * 1e9 / max(per_op, 1.0))
    return max(settings.min_ops, min(settings.max_ops, wanted))


def run_rounds(
    series: Mapping[str, OpRunner], *, rounds: int, ops: int, warmup_ops: int = 0
) -> dict[str, list[float]]:
    """Per-operation nanoseconds of each series, one value per round."""
    names = list(series)
    if warmup_ops:
        for name in names:
            series[name](warmup_ops)
    results: dict[str, list[float]] = {name: [] for name in names}
    settle_ops = max(2, ops // 10)
    # The set-up's objects are frozen out of the collector, so each round's gc.collect()
    # walks only what the rounds made (a full collection slowed the next ~100 ms).
    gc.collect()
    gc.freeze()
    try:
        for index in range(rounds):
            gc.collect()
            order = round_order(names, index)
            # An untimed settle: the series timed first after a collection ran ~6% slower.
            for name in order:
                series[name](settle_ops)
            for name in order:
                results[name].append(series[name](ops) / ops)
    finally:
        gc.unfreeze()
    return results


def round_order(names: list[str], index: int) -> list[str]:
    """Round ``index``'s order: rotations of ``names``, each run forwards and then backwards,
    so every series takes every position equally often and follows each of its neighbours
    (what ran just before a series sets how warm the caches it needs are)."""
    shift = (index // 2) % len(names)
    order = names[shift:] + names[:shift]
    return order[::-1] if index % 2 else order


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A confidence interval of the median of ``values`` that assumes no distribution: the
    order statistics ``j`` and ``n + 1 - j`` with ``j`` the deepest rank such that fewer
    than ``j`` of ``n`` fair coin flips come up heads with probability at most
    ``(1 - confidence) / 2``. With too few values for that (under 6 at 95%), the range."""
    ordered = sorted(values)
    n = len(ordered)
    tail = (1 - confidence) / 2
    depth, below = 0, 0.0  # below: P(Binomial(n, 1/2) < depth + 1)
    while depth < n // 2:
        below += math.comb(n, depth) / 2**n
        if below > tail:
            break
        depth += 1
    depth = max(depth, 1)
    return ordered[depth - 1], ordered[n - depth]


def compare(per_op: Mapping[str, list[float]], a: str, b: str, ops: int) -> Comparison:
    ratios = [x / y for x, y in zip(per_op[a], per_op[b], strict=True)]
    low, _, high = (
        statistics.quantiles(ratios, n=4, method="inclusive") if ratios[1:] else ratios * 3
    )
    a_us, b_us = statistics.median(per_op[a]) / 1000, statistics.median(per_op[b]) / 1000
    ratio, rounds = statistics.median(ratios), len(ratios)
    return Comparison(a_us, b_us, ratio, low, high, rounds, ops, *median_interval(ratios))
