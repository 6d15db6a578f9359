"""The results of a run, their targets, and the report (Markdown, also printed as is)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from benchmarks.counters import Counts
from benchmarks.encryption import EncryptionCost
from benchmarks.scale import GcResult, MemoryResult, ReadScaleResult
from benchmarks.timing import Comparison

#: Targets against the driver floors (issue 26), as regression guards: a ratio fails only
#: when its whole 95% interval lies above its limit (:func:`ratio_verdict`); a verdict inside
#: the noise is a PASS that says so.
READ_REQUEST_LIMIT = 1.10
WRITE_REQUEST_LIMIT = 1.10
#: A write on a store with no native conditional write must compare-and-set in a script
#: where the floor does a plain SET (the Redis family on Redis 7: Lua, answered ~10 µs
#: after a plain SET).
SCRIPTED_CAS_WRITE_REQUEST_LIMIT = 1.15
SCALE_LIMIT = 1.2
GC_BATCH_LIMIT_SECONDS = 1.0


@dataclass(frozen=True)
class Verdict:
    passed: bool
    text: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.text}"

    @property
    def mark(self) -> str:
        return "PASS" if self.passed else "**FAIL**"


def ratio_verdict(c: Comparison, limit: float) -> tuple[bool, str]:
    """A ratio fails only when its whole 95% interval lies above ``limit``; with the limit
    inside the interval it passes, and the note says it is inside the noise."""
    if c.ci_low > limit:
        return False, ""
    if c.ci_high >= limit:
        return True, "; the limit is inside the interval: inside the noise"
    return True, ""


def _ratio_text(c: Comparison, limit: float) -> str:
    return f"{c.ratio:.3f}x {{}} (95% CI {c.ci_low:.3f}-{c.ci_high:.3f}; limit {limit:.2f}x)"


@dataclass
class Row:
    store: str
    operation: str
    comparison: Comparison
    ours: Counts | None = None
    floor: Counts | None = None
    #: The target ratio, for the rows that have one (full requests).
    limit: float | None = None
    #: A read-only request: it must also write nothing (server-counted).
    read_only: bool = False

    def verdict(self) -> Verdict | None:
        if self.limit is None:
            return None
        passed, note = ratio_verdict(self.comparison, self.limit)
        text = _ratio_text(self.comparison, self.limit).format("the floor")
        if self.read_only:
            writes = self.ours.writes if self.ours is not None else float("nan")
            passed = passed and writes == 0  # not counted (nan) cannot show zero writes
            text += f", {writes:g} writes/request (target 0)"
        return Verdict(passed, f"{self.store:<10} {self.operation}: {text}{note}")


def _scale_verdict(r: ReadScaleResult) -> Verdict:
    passed, note = ratio_verdict(r.ours, SCALE_LIMIT)
    text = _ratio_text(r.ours, SCALE_LIMIT).format(f"the read with {r.small:,}")
    return Verdict(passed, f"{r.store:<10} read with {r.big:,} sessions: {text}{note}")


def _gc_verdict(g: GcResult) -> Verdict:
    return Verdict(
        g.max_batch_seconds <= GC_BATCH_LIMIT_SECONDS and g.remaining == 0,
        f"{g.store:<10} gc of {g.rows:,} expired rows: longest batch "
        f"{g.max_batch_seconds * 1000:.0f} ms (target <= {GC_BATCH_LIMIT_SECONDS * 1000:.0f} ms)"
        f", {g.remaining} left",
    )


@dataclass
class Report:
    machine: dict[str, Any]
    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    scale: list[ReadScaleResult] = field(default_factory=list)
    gc: list[GcResult] = field(default_factory=list)
    memory: MemoryResult | None = None
    encryption: list[EncryptionCost] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    finished: dict[str, Any] = field(default_factory=dict)

    def verdicts(self) -> list[Verdict]:
        found = [v for v in (row.verdict() for row in self.rows) if v is not None]
        return (
            found
            + [_scale_verdict(r) for r in self.scale]
            + [_gc_verdict(g) for g in self.gc]
            + [Verdict(c.passed, c.line()) for c in self.encryption]
        )

    def markdown(self) -> str:
        machine = {**self.machine, **self.finished}
        out = ["### Machine", "", *(f"- {key}: {value}" for key, value in machine.items())]
        if self.versions:
            out += ["- servers: " + ", ".join(f"{k} {v}" for k, v in self.versions.items())]
        out += ["- settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items())]
        if side_by_side := self._side_by_side():
            out += ["", "### Requests, sync (Flask) and asyncio (Starlette) side by side", ""]
            out += side_by_side
        out += ["", "### Operations and requests (per operation; ratio = ormsession / floor)", ""]
        out += self._rows_table()
        if self.scale:
            out += ["", "### Reads at scale", "", *self._scale_table()]
        if self.gc:
            out += ["", "### gc of expired rows", "", *self._gc_table()]
        if (m := self.memory) is not None:
            out += ["", "### Memory per held session", ""]
            out += [
                f"{m.ours_bytes:,.0f} bytes per opened `RequestSession` vs {m.floor_bytes:,.0f} "
                f"bytes for the floor's dict ({m.sessions:,} held at once, tracemalloc)."
            ]
        if self.encryption:
            out += ["", "### What encryption at rest costs a request (in-process store)", ""]
            out += ["| request | encrypted µs | plain µs | cost µs (95% CI) | target |"]
            out += ["|---|---:|---:|---|---|"]
            out += [
                f"| {c.operation} | {c.encrypted_us:.1f} | {c.plain_us:.1f} | "
                f"+{c.cost_us:.1f} ({c.cost_low_us:.1f} to {c.cost_high_us:.1f}) | "
                f"{'PASS' if c.passed else '**FAIL**'} |"
                for c in self.encryption
            ]
        out += ["", "### Server-counted work per operation", ""]
        out += [
            f"- {r.store} / {r.operation}: ormsession {r.ours.describe()}; "
            f"floor {r.floor.describe()}"
            for r in self.rows
            if r.ours is not None and r.floor is not None
        ]
        if self.skipped or self.errors:
            out += ["", "### Not measured", ""]
            out += [f"- {name}: skipped ({why})" for name, why in self.skipped.items()]
            out += [f"- {name}: ERROR {why}" for name, why in self.errors.items()]
        out += ["", "### Targets", "", "```", *(v.line() for v in self.verdicts()), "```"]
        return "\n".join(out) + "\n"

    def _rows_table(self) -> list[str]:
        lines = [
            "| store | operation | ormsession µs | floor µs | ratio (IQR) "
            "| ormsession work | floor work | target |",
            "|---|---|---:|---:|---|---|---|---|",
        ]
        for row in self.rows:
            c, verdict = row.comparison, row.verdict()
            lines.append(
                f"| {row.store} | {row.operation} | {c.a_us:.1f} | {c.b_us:.1f} | "
                f"{c.ratio:.3f} ({c.low:.2f}-{c.high:.2f}) | {_work(row.ours)} | "
                f"{_work(row.floor)} | {'' if verdict is None else verdict.mark} |"
            )
        return lines

    def _side_by_side(self) -> list[str]:
        """The request rows, Flask's and Starlette's of the same store and kind on one line:
        ratio (95% interval), ormsession's µs over the floor's, the verdict."""
        by_key = {(row.store, row.operation): row for row in self.rows}
        lines = []
        for row in self.rows:
            if not row.operation.startswith("Flask request, "):
                continue
            kind = row.operation.removeprefix("Flask request, ")
            cells = [row.store, kind]
            for framework in ("Flask", "Starlette"):
                twin = by_key.get((row.store, f"{framework} request, {kind}"))
                if twin is None:
                    cells += ["", ""]
                    continue
                c, verdict = twin.comparison, twin.verdict()
                mark = "" if verdict is None else f" {verdict.mark}"
                cells += [
                    f"{c.ratio:.3f} ({c.ci_low:.3f}-{c.ci_high:.3f}){mark}",
                    f"{c.a_us:.0f} / {c.b_us:.0f}",
                ]
            lines.append("| " + " | ".join(cells) + " |")
        if not lines:
            return []
        return [
            "| store | request | Flask: ratio (95% CI) | Flask µs: ours / floor "
            "| Starlette: ratio (95% CI) | Starlette µs: ours / floor |",
            "|---|---|---|---:|---|---:|",
            *lines,
        ]

    def _scale_table(self) -> list[str]:
        lines = [
            "| store | operation | sessions | ormsession µs | ratio (IQR) | floor µs "
            "| floor ratio | target |",
            "|---|---|---|---:|---|---:|---|---|",
        ]
        for r in self.scale:
            lines.append(
                f"| {r.store} | {r.operation} | {r.small:,} → {r.big:,} "
                f"| {r.ours.b_us:.1f} → {r.ours.a_us:.1f} | "
                f"{r.ours.ratio:.3f} ({r.ours.low:.2f}-{r.ours.high:.2f}) | "
                f"{r.floor.b_us:.1f} → {r.floor.a_us:.1f} | {r.floor.ratio:.3f} | "
                f"{_scale_verdict(r).mark} |"
            )
        sizes = [
            f"{r.store} {r.big_megabytes:.0f} MB" for r in self.scale if r.big_megabytes is not None
        ]
        lines += [
            "",
            "Bulk load: " + ", ".join(f"{r.store} {r.load_seconds:.1f} s" for r in self.scale),
        ]
        lines += ["", "Size of the big set on disk (table + indexes): " + ", ".join(sizes)]
        notes = [f"{r.store}: {r.cache_note}" for r in self.scale if r.cache_note]
        if notes:
            lines += ["", "Server cache for the reads: " + "; ".join(notes)]
        return lines

    def _gc_table(self) -> list[str]:
        lines = [
            "| store | expired rows | batch (smallest) | batches | total s | longest batch ms "
            "| median ms | p99 ms | left | target |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for g in self.gc:
            lines.append(
                f"| {g.store} | {g.rows:,} | {g.batch_size} ({g.smallest_batch}) | {g.batches} "
                f"| {g.total_seconds:.1f} | {g.max_batch_seconds * 1000:.1f} "
                f"| {g.median_batch_ms:.1f} | {g.p99_batch_ms:.1f} "
                f"| {g.remaining} | {_gc_verdict(g).mark} |"
            )
        load = ", ".join(f"{g.store} {g.load_seconds:.1f} s" for g in self.gc)
        return [*lines, "", f"Bulk load: {load}"]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


def _work(counts: Counts | None) -> str:
    return "(no I/O)" if counts is None else f"{counts.total:g} {counts.unit}, {counts.writes:g} w"


# -- the machine ----------------------------------------------------------------------------
def _proc_line(path: str, prefix: str) -> str | None:
    """The rest of the first line of ``path`` that starts with ``prefix``."""
    try:
        with open(path, encoding="utf-8") as lines:
            return next(
                (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(prefix)), None
            )
    except OSError:
        return None


def load_average() -> str:
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "?"


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except OSError:
        return "?"
    return done.stdout.strip() or "?"


PACKAGES = (
    "SQLAlchemy psycopg2-binary PyMySQL asyncpg asyncmy aiosqlite redis couchbase Flask "
    "Werkzeug starlette httpx"
)


def machine_info() -> dict[str, Any]:
    memory = _proc_line("/proc/meminfo", "MemTotal:")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git_commit(),
        "cpu": f"{_proc_line('/proc/cpuinfo', 'model name') or platform.processor() or '?'}, "
        f"{os.cpu_count()} cores",
        "ram": f"{int(memory.split()[0]) / 1024 / 1024:.1f} GiB" if memory else "?",
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": ", ".join(f"{name} {_package(name)}" for name in PACKAGES.split()),
        "load average at start (1, 5, 15 min)": load_average(),
    }
