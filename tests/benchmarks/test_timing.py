"""The round order: every series in every position, behind both of its neighbours; the
confidence interval of a median."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from itertools import pairwise

import pytest

from benchmarks.timing import (
    compare,
    median_interval,
    round_order,
    run_rounds,
)


@pytest.mark.parametrize("count", [2, 3, 4])
def test_every_series_takes_every_position_equally_often(count: int) -> None:
    names = [f"s{i}" for i in range(count)]
    rounds = [round_order(names, index) for index in range(2 * count)]
    assert all(sorted(order) == names for order in rounds)
    positions = Counter((name, order.index(name)) for order in rounds for name in order)
    assert set(positions.values()) == {2}, positions


def test_each_series_follows_both_neighbours() -> None:
    # Plain rotation kept "C after B" in every round; the scale reads' four series showed
    # what that costs. Each series must follow more than one other series.
    names = ["ours_small", "floor_small", "ours_big", "floor_big"]
    followed: dict[str, set[str]] = {name: set() for name in names}
    for index in range(8):
        order = round_order(names, index)
        for before, after in pairwise(order):
            followed[after].add(before)
    assert followed["ours_big"] == {"floor_small", "floor_big"}
    assert followed["floor_big"] == {"ours_big", "ours_small"}


def test_run_rounds_times_in_that_order() -> None:
    calls: list[str] = []

    def series(name: str) -> Callable[[int], int]:
        def run(n: int) -> int:
            calls.append(name)
            return n * 1000

        return run

    per_op = run_rounds({"a": series("a"), "b": series("b")}, rounds=4, ops=10)
    assert per_op == {"a": [1000.0] * 4, "b": [1000.0] * 4}
    # Each round: an untimed settle of both, then both timed, in the round's order.
    timed = [calls[i * 4 + 2 : i * 4 + 4] for i in range(4)]
    assert timed == [round_order(["a", "b"], i) for i in range(4)]
    assert timed == [["a", "b"], ["b", "a"], ["b", "a"], ["a", "b"]]


@pytest.mark.parametrize(
    ("count", "ranks"),
    # The textbook ranks of the 95 % interval of a median (binomial, p = 1/2); with 5
    # values or fewer no pair of ranks covers 95 %, and the interval is the whole range.
    [(5, (1, 5)), (6, (1, 6)), (10, (2, 9)), (31, (10, 22)), (91, (36, 56)), (121, (50, 72))],
)
def test_the_median_interval_is_the_pair_of_ranks_that_covers_95_percent(
    count: int, ranks: tuple[int, int]
) -> None:
    values = [float(rank) for rank in range(count, 0, -1)]  # any order: it sorts them
    assert median_interval(values) == (float(ranks[0]), float(ranks[1]))
    if count >= 6:
        low = ranks[0] - 1  # outside if at most this many values fall below the median
        tail = sum(math.comb(count, i) for i in range(low + 1)) / 2**count
        assert tail <= 0.025 < tail + math.comb(count, low + 1) / 2**count


def test_the_interval_covers_the_true_median_about_95_percent_of_the_time() -> None:
    generator = random.Random(8)
    trials, covered = 2_000, 0
    for _ in range(trials):
        # Skewed like the per-round ratios (a slow round is slower by more than a fast one
        # is faster); the median of this distribution is exactly 1.
        values = [math.exp(generator.gauss(0, 0.05)) for _ in range(31)]
        low, high = median_interval(values)
        covered += low <= 1 <= high
    assert 0.93 <= covered / trials <= 0.99


def test_compare_gives_the_interval_of_the_per_round_ratios() -> None:
    ours = [110.0, 100.0, 130.0, 105.0, 120.0, 101.0, 140.0, 102.0, 111.0, 125.0]
    floor = [100.0] * 10
    comparison = compare({"ours": ours, "floor": floor}, "ours", "floor", ops=1)
    assert comparison.ratio == pytest.approx(1.105)
    assert (comparison.ci_low, comparison.ci_high) == (1.01, 1.30)  # ranks 2 and 9 of 10
