"""The race table: after a run of the load test, what 64 requests at once did on each store.

Printed at the end of the run (``ORMSESSION_RACE_TABLE=path`` also writes it to that file);
docs/reliability.md, "Races", shows the latest one.
"""

from __future__ import annotations

import os
from typing import Any

from tests.races.test_load import COLUMNS, RESULTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    lines = [
        "| store | twin | " + " | ".join(COLUMNS) + " |",
        "|---|---|" + "---:|" * len(COLUMNS),
    ]
    for (store, twin), counts in RESULTS.items():
        lines.append(f"| {store} | {twin} | " + " | ".join(str(counts[c]) for c in COLUMNS) + " |")
    terminalreporter.section("race table (docs/reliability.md, Races)")
    for line in lines:
        terminalreporter.write_line(line)
    path = os.environ.get("ORMSESSION_RACE_TABLE")
    if path:
        with open(path, "w", encoding="utf-8") as table:
            table.write("\n".join(lines) + "\n")
