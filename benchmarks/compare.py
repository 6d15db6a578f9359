"""``python -m benchmarks.compare OLD.json NEW.json``: two runs' requests, side by side.

For "make bench on both commits, one after the other": each run's ``--json`` report gives,
per request row (the rows with a ``limit``), ormsession's cost over its floor's in that run
(``comparison.ratio``, with its 95% interval). Normalised by the floor, the two runs compare
even when the machine drifted between them: the change is ``new.ratio / old.ratio``, with
the conservative interval ``[new.ci_low / old.ci_high, new.ci_high / old.ci_low]``. A row
is SLOWER when that whole interval lies above :data:`SLOWER_ABOVE`; the exit status is 1
if any row is. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SLOWER_ABOVE = 1.03


@dataclass(frozen=True)
class Change:
    store: str
    operation: str
    old_us: float
    new_us: float
    old_ratio: float  # ormsession over its floor in each run
    new_ratio: float
    ratio: float
    low: float
    high: float

    @property
    def slower(self) -> bool:
        return self.low > SLOWER_ABOVE


def request_rows(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The rows with a target, by (store, operation)."""
    rows = report.get("rows", [])
    return {(r["store"], r["operation"]): r for r in rows if r.get("limit") is not None}


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """The request rows both runs have, in the new run's order."""
    before, found = request_rows(old), []
    for key, row in request_rows(new).items():
        if key not in before:
            continue
        a, b = before[key]["comparison"], row["comparison"]
        found.append(
            Change(
                *key,
                old_us=a["a_us"],
                new_us=b["a_us"],
                old_ratio=a["ratio"],
                new_ratio=b["ratio"],
                ratio=b["ratio"] / a["ratio"],
                low=b["ci_low"] / a["ci_high"],
                high=b["ci_high"] / a["ci_low"],
            )
        )
    return found


def table(found: Sequence[Change]) -> list[str]:
    lines = [
        "| store | request | old µs | new µs | old / floor | new / floor | new / old "
        "| 95% interval | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for c in found:
        verdict = "**SLOWER**" if c.slower else "OK"
        lines.append(
            f"| {c.store} | {c.operation} | {c.old_us:.1f} | {c.new_us:.1f} | {c.old_ratio:.3f} "
            f"| {c.new_ratio:.3f} | {c.ratio:.3f} "
            f"| {c.low:.3f}-{c.high:.3f} | {verdict} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("old", type=Path, help="the earlier run's --json report")
    parser.add_argument("new", type=Path, help="the later run's --json report")
    args = parser.parse_args(argv)
    old, new = (json.loads(path.read_text(encoding="utf-8")) for path in (args.old, args.new))
    found = changes(old, new)
    if not found:
        parser.error("the two reports have no request rows in common")
    print("\n".join(table(found)))
    slower = sum(c.slower for c in found)
    print(f"\n{slower} of {len(found)} requests SLOWER (whole interval above {SLOWER_ABOVE}).")
    return 1 if slower else 0


if __name__ == "__main__":
    raise SystemExit(main())
