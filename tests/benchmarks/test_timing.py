"""The round order: every series in every position, behind both of its neighbours; and the
count of the times a series slept; the spread lines of a set of timings."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from itertools import pairwise

import pytest

from benchmarks.timing import Waits, round_order, run_rounds, spread_lines, timed


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


def test_waits_count_the_sleeps_of_a_series_and_not_its_work() -> None:
    sleeping, working = Waits(), Waits()
    assert sleeping.counting(timed(lambda: time.sleep(0.001)))(5) > 0
    working.counting(timed(lambda: sum(range(2_000))))(5)

    # Every sleep gives the CPU away once; a loop of arithmetic has no reason to.
    assert sleeping.operations == working.operations == 5
    assert sleeping.per_operation >= 1
    assert working.per_operation < 0.5


def test_spread_lines_give_each_entrys_percentiles_and_its_median_over_the_base() -> None:
    times = {"set": [float(v) for v in range(1, 11)], "script": [float(v) for v in range(3, 13)]}
    assert spread_lines(times, "set", "SET") == [
        "set     p10    2.0  p50    5.5  p90   10.0 µs  (p50  +0.0 µs on SET)",
        "script  p10    4.0  p50    7.5  p90   12.0 µs  (p50  +2.0 µs on SET)",
    ]
