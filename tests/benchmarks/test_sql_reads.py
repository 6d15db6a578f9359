"""``python -m benchmarks.sql_reads``: a tiny run times every read shape on both SQL servers
(each one finding the session ormsession stored), and what it cannot measure is a usage
error."""

from __future__ import annotations

import re

import pytest

from benchmarks.sql_reads import SHAPES, STORES, main

NUMBER = r"\s+[\d.]+"


def test_a_tiny_run_prints_every_shape_on_every_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--count", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(STORES) * len(SHAPES)
    expected = [(store, shape) for store in STORES for shape in SHAPES]
    for (store, shape), line in zip(expected, lines, strict=True):
        assert re.fullmatch(
            rf"{store}\s+{re.escape(shape)}\s+p10{NUMBER}\s+p50{NUMBER}\s+p90{NUMBER} µs  "
            r"\(p50\s+[+-][\d.]+ µs on the floor\)",
            line,
        ), line
    floor_lines = [line for line in lines if line.split()[1] == "floor"]
    assert all("(p50  +0.0 µs on the floor)" in line for line in floor_lines), floor_lines


@pytest.mark.parametrize("argv", [["--stores", "sqlite"], ["--count", "0"]], ids=["store", "count"])
def test_what_it_cannot_measure_is_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
