"""The benchmark pipeline, end to end with tiny counts, so ``make bench`` never rots.

This runs every part of ``python -m benchmarks`` (set-up and tear-down of every store,
the interleaved rounds, the server-side counters, the scale part, the report) but
measures nothing worth reading: the targets are not asserted, only that the report has
its rows, ratios, counts and PASS/FAIL lines.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks.harness import POOL_ROW, main
from benchmarks.stores import ALL_STORES, CPU_ONLY
from tests.support.backends import backend_missing

OPERATIONS = (
    "open",
    "save (modified)",
    "open + save (unmodified)",
    "regenerate",
    "Flask request, read-only",
    "Flask request, write",
    "Starlette request, read-only",
    "Starlette request, write",
)
# | store | operation | ours µs | floor µs | ratio (IQR) | ours work | floor work | target |
ROW = re.compile(
    r"^\| (?P<store>\w+) \| (?P<operation>[^|]+?) \| [\d.]+ \| [\d.]+ \| "
    r"(?P<ratio>[\d.]+) \([\d.]+-[\d.]+\) \| (?P<ours>[\d.]+) (?:stmt|cmd|op), "
    r"(?P<writes>[\d.]+) w \| [\d.]+ (?:stmt|cmd|op), [\d.]+ w \| "
    r"(?P<target>PASS|\*\*FAIL\*\*|) \|$",
    re.MULTILINE,
)


@pytest.mark.timeout(120)
def test_the_whole_pipeline_runs_on_every_store(tmp_path: Path) -> None:
    report_path, json_path = tmp_path / "report.md", tmp_path / "report.json"
    code = main(
        [
            "--quick",
            "--stores",
            ",".join((CPU_ONLY, *ALL_STORES)),
            "--scale-small",
            "50",
            "--scale-big",
            "500",
            "--gc-rows",
            "1500",
            "--markdown",
            str(report_path),
            "--json",
            str(json_path),
        ]
    )
    results = json.loads(json_path.read_text(encoding="utf-8"))
    for store, reason in results["skipped"].items():
        backend_missing(f"benchmark store {store} unavailable: {reason}")
    assert code == 0, results["errors"]
    text = report_path.read_text(encoding="utf-8")

    rows = {(m["store"], m["operation"]): m for m in ROW.finditer(text)}
    for store in ALL_STORES:
        for operation in OPERATIONS:
            row = rows.get((store, operation))
            assert row is not None, f"no row for {store} / {operation}"
            assert float(row["ratio"]) > 0
            assert float(row["ours"]) > 0, f"{store} / {operation}: nothing counted"
            if operation.startswith(("Flask", "Starlette")):
                assert row["target"], f"{store} / {operation}: no PASS/FAIL"

    # Against the driver floors every request's limit is 1.10, but the Redis family's
    # writes: they compare-and-set in a Lua script where the floor SETs, 1.15.
    limits = {
        (row["store"], row["operation"]): row["limit"]
        for row in results["rows"]
        if row["operation"].endswith(("request, write", "request, read-only"))
    }
    assert len(limits) == 4 * (1 + len(ALL_STORES))
    scripted = {"redis", "sentinel", "cluster"}
    for (store, operation), limit in limits.items():
        write = operation.endswith("write")
        expected = 1.15 if store in scripted and write else 1.10
        assert limit == (None if store == CPU_ONLY else expected), (store, operation)

    # The SQL stores' labelled extra rows: the floor on SQLAlchemy's pool against the
    # driver floor, counted like the others, without a target.
    for store in ("sqlite", "postgresql", "mariadb"):
        for framework in ("Flask", "Starlette"):
            for kind in ("read-only", "write"):
                row = rows.get((store, POOL_ROW.format(f"{framework} request, {kind}")))
                assert row is not None, f"no SQLAlchemy-pool row for {store} {framework} {kind}"
                assert float(row["ours"]) > 0 and not row["target"]
    assert "### Requests, sync (Flask) and asyncio (Starlette) side by side" in text

    targets = text.split("### Targets", 1)[1]
    verdicts = re.findall(r"^(PASS|FAIL)  (\w+) ", targets, re.MULTILINE)
    # requests, scale reads, gc, and encryption's cost for each of its four requests
    assert len(verdicts) == len(ALL_STORES) * 4 + 3 + 2 + 4
    assert "### What encryption at rest costs a request" in text
    assert "### Reads at scale" in text
    assert "### gc of expired rows" in text
    assert "### Memory per held session" in text
    assert "### Machine" in text


def test_the_contention_benchmark_counts_give_ups_and_checks_every_last_value(
    tmp_path: Path,
) -> None:
    from benchmarks.contention import measure
    from ormsession.schema import upgrade

    url = f"sqlite:///{tmp_path / 'contention.sqlite3'}"
    upgrade(url)
    result = measure(url, writers=2, saves=25)
    assert (result.writers, result.saves) == (2, 50)
    assert 0 <= result.gave_up <= 50
    assert result.line().startswith("2 writers x 25 saves: ")
