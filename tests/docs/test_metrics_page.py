"""docs/metrics.md: its table is the instruments' table, and its examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from ormsession import SchemaError
from ormsession.metrics import INSTRUMENTS
from ormsession.policy import StoreMethod

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "metrics.md"


def example(heading: str) -> str:
    """The first ``python`` block after ``heading`` on the page."""
    text = PAGE.read_text()
    start = text.index(f"\n{heading}\n")
    found = re.search(r"```python\n(.*?)```", text[start:], re.DOTALL)
    assert found, f"no python example under {heading!r}"
    return found.group(1)


def table_rows(first_header: str) -> list[list[str]]:
    """The rows of the table whose first column is headed ``first_header``."""
    text = PAGE.read_text()
    start = text.index(f"\n| {first_header} |")
    rows = []
    for line in text[start:].strip().splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_the_table_is_the_instruments_table() -> None:
    documented = {}
    for name, kind, unit, attributes, _ in table_rows("name"):
        documented[names(name)[0]] = (kind, names(unit)[0], tuple(names(attributes)))
    assert documented == {
        name: (spec.kind, spec.unit, spec.attributes) for name, spec in INSTRUMENTS.items()
    }


def test_the_operations_listed_are_the_repository_operations() -> None:
    values = {names(row[0])[0]: names(row[1]) for row in table_rows("attribute")}
    assert values["ormsession.operation"] == list(typing.get_args(StoreMethod))
    attributes = {a for spec in INSTRUMENTS.values() for a in spec.attributes}
    assert set(values) == attributes


def test_the_opentelemetry_example(tmp_path: Path) -> None:
    workload = """
session = manager.open(None)
session["user"] = 42
manager.save(session)
manager.close()
"""  # at exit the SDK shuts its provider down, and the reader exports what it holds
    done = subprocess.run(
        [sys.executable, "-c", example("## OpenTelemetry") + workload],
        cwd=tmp_path,
        env=os.environ | {"PYTHONPATH": str(ROOT)},  # this checkout's ormsession
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert '"name": "ormsession.store.operation.duration"' in done.stdout
    assert '"name": "ormsession.session.size"' in done.stdout
    assert '"ormsession.store": "sqlite"' in done.stdout
    assert (tmp_path / "sessions.sqlite3").exists()


def test_the_callback_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the example's SQLite file lands here
    namespace: dict[str, Any] = {"__name__": "metrics_callback_example"}
    exec(compile(example("## A callback"), "docs/metrics.md", "exec"), namespace)
    manager = namespace["manager"]
    try:
        session = manager.open(None)
        session["user"] = 42
        manager.save(session)
        assert not namespace["store_errors"]
        engine = sqlalchemy.create_engine("sqlite:///sessions.sqlite3")
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE session")
        engine.dispose()
        with pytest.raises(SchemaError):
            manager.open(session.id)
    finally:
        manager.close()
    assert namespace["store_errors"] == {"SchemaError": 1}
