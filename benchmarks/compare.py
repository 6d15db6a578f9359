"""``python -m benchmarks.compare OLD.json NEW.json``: two runs' request rows, for "make bench
on both commits, one after the other". Each run's cost over its own floor cancels the
machine's drift between the runs: the change is ``new.ratio / old.ratio``, with the
conservative interval ``[new.ci_low / old.ci_high, new.ci_high / old.ci_low]``, SLOWER when
all of it lies above :data:`SLOWER_ABOVE` (then the exit status is 1)."""

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
    old_us: float  # ormsession's µs per request in each run
    new_us: float
    old_ratio: float  # ormsession over its floor in each run
    new_ratio: float
    ratio: float  # new_ratio / old_ratio, and its interval
    low: float
    high: float

    @property
    def slower(self) -> bool:
        return self.low > SLOWER_ABOVE


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """The request rows (those with a ``limit``) both runs have, in the new run's order."""
    before = {(r["store"], r["operation"]): r["comparison"] for r in old.get("rows", [])}
    found = []
    for row in new.get("rows", []):
        a, b = before.get((row["store"], row["operation"])), row["comparison"]
        if row.get("limit") is None or a is None:
            continue
        found.append(
            Change(
                row["store"], row["operation"], a["a_us"], b["a_us"], a["ratio"], b["ratio"],
                b["ratio"] / a["ratio"], b["ci_low"] / a["ci_high"], b["ci_high"] / a["ci_low"],
            )
        )  # fmt: skip
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    parser.add_argument("old", type=Path, help="the earlier run's --json report")
    parser.add_argument("new", type=Path, help="the later run's --json report")
    args = parser.parse_args(argv)
    old, new = (json.loads(path.read_text(encoding="utf-8")) for path in (args.old, args.new))
    found = changes(old, new)
    if not found:
        parser.error("the two reports have no request rows in common")
    print("| store | request | old µs | new µs | old / floor | new / floor | new / old ", end="")
    print("| 95% interval | verdict |\n|---|---|---:|---:|---:|---:|---:|---|---|")
    for c in found:
        print(
            f"| {c.store} | {c.operation} | {c.old_us:.1f} | {c.new_us:.1f} | {c.old_ratio:.3f} "
            f"| {c.new_ratio:.3f} | {c.ratio:.3f} | {c.low:.3f}-{c.high:.3f} "
            f"| {'**SLOWER**' if c.slower else 'OK'} |"
        )
    slower = sum(c.slower for c in found)
    print(f"\n{slower} of {len(found)} requests SLOWER (whole interval above {SLOWER_ABOVE}).")
    return 1 if slower else 0


if __name__ == "__main__":
    raise SystemExit(main())
