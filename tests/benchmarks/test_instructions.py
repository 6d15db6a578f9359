"""``python -m benchmarks.instructions``: callgrind's totals, per request, for both sides."""

from __future__ import annotations

import shutil

import pytest

from benchmarks.instructions import Count, count_per_request, main, total_instructions
from tests.support.backends import backend_missing

CALLGRIND_OUT = """# callgrind format
version: 1
events: Ir
summary: 2795132094
totals: 2795132094
"""


def test_the_total_is_read_off_the_totals_line() -> None:
    assert total_instructions(CALLGRIND_OUT) == 2_795_132_094
    with pytest.raises(ValueError, match="totals"):
        total_instructions("events: Ir\n")


def test_a_count_reports_the_ratio_and_the_difference() -> None:
    count = Count("memory", "starlette-read", ours=1_634_838, floor=1_613_172)
    assert count.ratio == pytest.approx(1.01343, abs=1e-5)
    assert "ratio 1.0134" in count.line() and "(+21,666)" in count.line()


@pytest.mark.parametrize(
    "argv",
    [
        ["--short", "600", "--long", "100"],
        ["--stores", "mongodb"],
        ["--requests", "django-read"],
    ],
)
def test_bad_options_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


def test_a_tiny_run_counts_each_request_of_both_sides() -> None:
    if shutil.which("valgrind") is None:
        backend_missing("valgrind is not installed")
    count = count_per_request("starlette-read", "memory", 5, 15)
    # A Starlette request through httpx is over a million instructions on either side, and
    # ormsession's session layer adds a few percent, not a multiple: a count of the set-up
    # (not cancelled out) or of an empty series would land far outside.
    assert 500_000 < count.floor < 5_000_000
    assert 0.95 < count.ratio < 1.25
