"""``python -m benchmarks.in_flight``: a tiny run prints a line per request kind and number in
flight, and what it cannot measure is a usage error."""

from __future__ import annotations

import re

import pytest

from benchmarks.in_flight import main

SIDE = r"[\d.]+ µs [\d.]+ waits"


def test_a_tiny_run_prints_each_kind_at_each_count(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--stores", "memory", "--rounds", "3", "--ops", "8", "--in-flight", "1,3"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["memory", "starlette-read", "x1"],
        ["memory", "starlette-read", "x3"],
        ["memory", "starlette-write", "x1"],
        ["memory", "starlette-write", "x3"],
    ]
    shape = re.compile(rf"[\d.]+ \([\d.]+-[\d.]+\)  ormsession\s+{SIDE} \| floor\s+{SIDE}$")
    assert all(shape.search(line) for line in lines), lines


@pytest.mark.parametrize(
    "argv",
    [
        ["--stores", "mongodb"],
        ["--requests", "flask-read"],
        ["--in-flight", "0"],
        ["--in-flight", "1,many"],
    ],
    ids=["store", "request", "zero", "not-a-number"],
)
def test_what_it_cannot_measure_is_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
