"""The instruction counts' bookkeeping: callgrind's dumps read back per request, and the
table; and the report's side-by-side table of sync and asyncio requests."""

from __future__ import annotations

from pathlib import Path

from benchmarks.instructions import _parse, steps_table, table
from benchmarks.report import Report, Row
from benchmarks.timing import Comparison


def _dump(directory: Path, name: str, label: str, total: int) -> None:
    (directory / name).write_text(
        f"# callgrind format\nversion: 1\ndesc: Trigger: Client Request: {label}\n"
        f"events: Ir\nsummary: {total}\ntotals: {total}\n",
        encoding="utf-8",
    )


def test_each_dump_is_read_back_per_request_and_tabled(tmp_path: Path) -> None:
    _dump(tmp_path, "callgrind.out.7.1", "sqlite|Flask request, write|ours|200", 300_000_000)
    _dump(tmp_path, "callgrind.out.7.2", "sqlite|Flask request, write|floor|200", 250_000_000)
    _dump(tmp_path, "callgrind.out.7.3", "sqlite|Flask request, write|pool|200", 260_000_000)
    # The dump at the program's end has no label: not a series.
    (tmp_path / "callgrind.out.7").write_text("events: Ir\ntotals: 5\n", encoding="utf-8")
    counts = _parse(tmp_path)
    assert counts == {
        ("sqlite", "Flask request, write", "ours"): 1_500_000.0,
        ("sqlite", "Flask request, write", "floor"): 1_250_000.0,
        ("sqlite", "Flask request, write", "pool"): 1_300_000.0,
    }
    lines = table(counts).splitlines()
    assert lines[2] == "| sqlite | Flask request, write | 1,500 | 1,250 | 1.200 | +250 |"
    assert lines[3] == (
        "| sqlite | Flask request, write: SQLAlchemy-pool floor | 1,300 | 1,250 | 1.040 | +50 |"
    )


def test_steps_are_tabled_in_the_order_they_ran(tmp_path: Path) -> None:
    _dump(tmp_path, "callgrind.out.9.2", "mariadb|asyncio.timeout|ours|300", 10_500_000)
    _dump(tmp_path, "callgrind.out.9.1", "mariadb|operation deadline|ours|300", 1_920_000)
    lines = steps_table(_parse(tmp_path)).splitlines()
    assert lines[2:] == [
        "| mariadb | operation deadline | ours | 6.4 |",
        "| mariadb | asyncio.timeout | ours | 35.0 |",
    ]


def _row(store: str, operation: str, ratio: float, limit: float | None = 1.10) -> Row:
    comparison = Comparison(110.0, 100.0, ratio, ratio, ratio, 91, 10, ratio - 0.01, ratio + 0.01)
    return Row(store, operation, comparison, limit=limit)


def test_the_report_puts_flask_and_starlette_side_by_side() -> None:
    report = Report(
        machine={},
        settings={},
        rows=[
            _row("sqlite", "open", 1.2, limit=None),
            _row("sqlite", "Flask request, write", 1.05),
            _row("sqlite", "Starlette request, write", 1.30),
            _row("sqlite", "Flask request, write: SQLAlchemy-pool floor", 1.08, limit=None),
            _row("sqlite", "Starlette request, write: SQLAlchemy-pool floor", 1.09, limit=None),
        ],
    )
    text = report.markdown()
    section = text.split("side by side", 1)[1].split("###", 1)[0]
    assert "| sqlite | write | 1.050 (1.040-1.060) PASS | 110 / 100 " in section
    assert "| 1.300 (1.290-1.310) **FAIL** | 110 / 100 |" in section
    assert "| sqlite | write: SQLAlchemy-pool floor | 1.080 (1.070-1.090) | 110 / 100 " in section
    assert "open" not in section
