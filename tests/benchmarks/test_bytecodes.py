"""``--bytecodes``: the per-function difference between ormsession's side and the floor's."""

from __future__ import annotations

import pytest

from benchmarks.bytecodes import bytecode_diff
from benchmarks.harness import main


def _extra_work() -> int:
    return sum(range(10))


def _ours(n: int) -> int:
    for _ in range(n):
        _extra_work()
    return 0


def _floor(n: int) -> int:
    for _ in range(n):
        pass
    return 0


def test_the_diff_names_the_function_only_one_side_runs() -> None:
    diff = bytecode_diff(_ours, _floor, ops=10)
    assert diff.ours_per_op > diff.floor_per_op
    extra = [row for row in diff.rows if row[2].endswith(":_extra_work")]
    assert len(extra) == 1
    ours, floor, _ = extra[0]
    assert ours > 0 and floor == 0
    # Deterministic: the same work per call, however many calls were traced.
    again = bytecode_diff(_ours, _floor, ops=20)
    assert [row for row in again.rows if row[2].endswith(":_extra_work")] == extra
    assert "bytecodes per operation" in diff.lines()[0]


@pytest.mark.timeout(60)
def test_the_option_prints_the_diff_of_matching_operations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["--quick", "--stores", "memory", "--no-scale", "--bytecodes", "memory open"])
    assert code == 0
    err = capsys.readouterr().err
    assert "--- bytecodes: memory / open ---" in err
    assert "--- bytecodes: memory / open + save (unmodified) ---" in err
    assert "regenerate ---" not in err
    assert "ormsession/manager.py:open" in err
    assert "stdlib/" in err or "site-packages" not in err
