"""Two runs' request rows compared through their floors: new/old with the conservative
interval, SLOWER only when all of it lies above 1.03, exit status 1 if any row is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.compare import changes, main


def _row(
    store: str,
    operation: str,
    us: float,
    ratio: float,
    ci: tuple[float, float],
    limit: float | None = 1.10,
) -> dict[str, Any]:
    comparison = {"a_us": us, "ratio": ratio, "ci_low": ci[0], "ci_high": ci[1]}
    return {"store": store, "operation": operation, "comparison": comparison, "limit": limit}


OLD = {
    "rows": [
        _row("redis", "Starlette request, write", 700.0, 1.05, (1.04, 1.06)),
        _row("redis", "Flask request, write", 600.0, 1.05, (1.04, 1.06)),
        _row("redis", "open", 130.0, 1.04, (1.03, 1.05), limit=None),
        _row("sqlite", "Flask request, write", 340.0, 1.00, (0.99, 1.01)),
    ]
}
NEW = {
    "rows": [
        # 1.155 / 1.05 = 1.10; interval 1.14/1.06 .. 1.17/1.04: all of it above 1.03
        _row("redis", "Starlette request, write", 800.0, 1.155, (1.14, 1.17)),
        # 1.092 / 1.05 = 1.04, but 1.07/1.06 = 1.009 lies below 1.03: inside the noise
        _row("redis", "Flask request, write", 650.0, 1.092, (1.07, 1.11)),
        _row("redis", "open", 200.0, 1.50, (1.45, 1.55), limit=None),  # no target: ignored
        _row("couchbase", "Flask request, write", 900.0, 1.02, (1.01, 1.03)),  # only here
    ]
}


def test_each_common_request_is_its_new_ratio_over_its_old_one() -> None:
    slower, noisy = changes(OLD, NEW)
    assert (slower.store, slower.operation) == ("redis", "Starlette request, write")
    assert slower.ratio == pytest.approx(1.10)
    assert (slower.low, slower.high) == (pytest.approx(1.14 / 1.06), pytest.approx(1.17 / 1.04))
    assert (slower.old_us, slower.new_us) == (700.0, 800.0)
    assert slower.slower
    assert noisy.ratio == pytest.approx(1.04)
    assert noisy.low == pytest.approx(1.07 / 1.06)
    assert not noisy.slower


def _run(tmp_path: Path, old: dict[str, Any], new: dict[str, Any]) -> int:
    paths = tmp_path / "old.json", tmp_path / "new.json"
    for path, report in zip(paths, (old, new), strict=True):
        path.write_text(json.dumps(report), encoding="utf-8")
    return main([str(path) for path in paths])


def test_a_slower_request_fails_the_comparison(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(tmp_path, OLD, NEW) == 1
    out = capsys.readouterr().out
    assert (
        "| redis | Starlette request, write | 700.0 | 800.0 | 1.050 | 1.155 | 1.100 "
        "| 1.075-1.125 | **SLOWER** |"
    ) in out
    assert "| redis | Flask request, write | 600.0 | 650.0 |" in out
    assert "| OK |" in out
    assert "open" not in out
    assert "couchbase" not in out
    assert "1 of 2 requests SLOWER" in out


def test_the_same_run_twice_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, OLD, OLD) == 0
    assert "0 of 3 requests SLOWER" in capsys.readouterr().out


def test_reports_with_no_request_in_common_are_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _run(tmp_path, OLD, {"rows": []})
    assert exit_info.value.code == 2
