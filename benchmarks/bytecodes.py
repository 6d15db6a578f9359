"""Bytecodes executed per operation, by function: where ormsession's side does more than
the floor's (``--bytecodes PATTERN``).

Timings on a shared VM move by several percent between runs; the number of bytecodes an
operation executes does not (for the same code and inputs), so it shows which functions a
change made cheaper even when the timing cannot. A tracer slows the traced code some fifty
times, so this runs on a few operations after the timed rounds, never during them.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.timing import OpRunner

__all__ = ["BytecodeDiff", "bytecode_diff", "count_bytecodes"]


_ROOT = str(Path(__file__).resolve().parent.parent) + "/"
_STDLIB = re.compile(r".*/lib/python3\.\d+/")


def _where(frame: FrameType) -> str:
    """``module/path.py:function``: the project's files from its root, installed
    packages from site-packages, the standard library with ``stdlib/``."""
    code = frame.f_code
    path = code.co_filename
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif path.startswith(_ROOT):
        path = path[len(_ROOT) :]
    else:
        path = _STDLIB.sub("stdlib/", path)
    return f"{path}:{code.co_name}"


def count_bytecodes(series: OpRunner, ops: int) -> Counter[str]:
    """Bytecodes ``series(ops)`` executes in this thread (event loop included), by function."""
    counts: Counter[str] = Counter()

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            counts[_where(frame)] += 1
        return trace

    series(2)  # warm caches and connections, untraced
    sys.settrace(trace)
    try:
        series(ops)
    finally:
        sys.settrace(None)
    return counts


class BytecodeDiff:
    """ormsession's and the floor's counts for the same operations, per operation."""

    def __init__(self, ours: Counter[str], floor: Counter[str], ops: int) -> None:
        self.ours_per_op = sum(ours.values()) / ops
        self.floor_per_op = sum(floor.values()) / ops
        names = set(ours) | set(floor)
        self.rows = sorted(
            ((ours[n] / ops, floor[n] / ops, n) for n in names if ours[n] != floor[n]),
            key=lambda row: -abs(row[0] - row[1]),
        )

    def lines(self, top: int = 30) -> list[str]:
        ratio = self.ours_per_op / self.floor_per_op if self.floor_per_op else float("nan")
        lines = [
            f"bytecodes per operation: ormsession {self.ours_per_op:,.0f}, floor "
            f"{self.floor_per_op:,.0f} ({ratio:.3f}x, "
            f"{self.ours_per_op - self.floor_per_op:+,.0f})",
            f"{'difference':>10} {'ours':>8} {'floor':>8}  function",
        ]
        for ours, floor, name in self.rows[:top]:
            lines.append(f"{ours - floor:>+10.1f} {ours:>8.1f} {floor:>8.1f}  {name}")
        return lines


def bytecode_diff(ours: OpRunner, floor: OpRunner, ops: int = 50) -> BytecodeDiff:
    return BytecodeDiff(count_bytecodes(ours, ops), count_bytecodes(floor, ops), ops)
