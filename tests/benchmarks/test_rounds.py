"""The rows with a target (full requests) get their own, larger number of rounds; the
options that set the rounds, and what they refuse."""

from __future__ import annotations

import pytest

from benchmarks.harness import Scenario, measure, parse
from benchmarks.timing import timed


def test_the_requests_get_their_own_rounds_and_plain_operations_the_others() -> None:
    plan = parse(["--quick", "--stores", "sqlite", "--rounds", "4", "--request-rounds", "7"])[0]
    work = timed(lambda: None)
    operation = measure("sqlite", Scenario("open", work, work), None, plan)
    request = measure("sqlite", Scenario("Flask request, write", work, work, 1.10), None, plan)
    assert operation.comparison.rounds == 4
    assert request.comparison.rounds == 7
    assert request.limit == 1.10 and operation.limit is None


def test_by_default_the_requests_get_three_times_the_rounds() -> None:
    timing = parse(["--stores", "memory"])[0].timing
    assert (timing.rounds, timing.request_rounds) == (31, 91)
    # --rounds alone sets both (a quick look at fewer rounds means every row).
    timing = parse(["--stores", "memory", "--rounds", "9"])[0].timing
    assert (timing.rounds, timing.request_rounds) == (9, 9)
    timing = parse(["--stores", "memory", "--request-rounds", "121"])[0].timing
    assert (timing.rounds, timing.request_rounds) == (31, 121)


@pytest.mark.parametrize("option", ["--rounds", "--request-rounds"])
def test_rounds_below_one_are_a_usage_error(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(["--stores", "memory", option, "0"])
    assert exit_info.value.code == 2
    assert f"{option} must be at least 1, not 0" in capsys.readouterr().err
