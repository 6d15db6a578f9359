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
from benchmarks.scale import GcResult, MemoryResult, ReadScaleResult
from benchmarks.timing import Comparison

__all__ = ["Report", "Row", "Verdict", "machine_info", "ratio_verdict"]

#: Targets, as regression guards: a ratio fails only when its whole 95% interval lies above
#: its limit (:func:`ratio_verdict`); a verdict inside the noise is a PASS that says so.
READ_REQUEST_LIMIT = 1.05
WRITE_REQUEST_LIMIT = 1.10
#: A write on a store with no native conditional write must compare-and-set in a script
#: (the Redis family on Redis 7: Lua, answered ~10 µs after a plain SET).
SCRIPTED_CAS_WRITE_REQUEST_LIMIT = 1.15
SCALE_LIMIT = 1.2
GC_BATCH_LIMIT_SECONDS = 1.0


@dataclass(frozen=True)
class Verdict:
    passed: bool
    text: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.text}"


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
    #: Times the benchmark's thread slept per operation, ormsession's and the floor's.
    waits: tuple[float, float] | None = None

    def verdict(self) -> Verdict | None:
        if self.limit is None:
            return None
        c = self.comparison
        passed, note = ratio_verdict(c, self.limit)
        text = f"{self.store:<10} {self.operation}: {c.ratio:.3f}x the floor"
        text += f" (95% CI {c.ci_low:.3f}-{c.ci_high:.3f}; limit {self.limit:.2f}x)"
        if self.read_only:
            writes = self.ours.writes if self.ours is not None else float("nan")
            passed = passed and writes == 0  # not counted (nan) cannot show zero writes
            text += f", {writes:g} writes/request (target 0)"
        return Verdict(passed, text + note)


def ratio_verdict(c: Comparison, limit: float) -> tuple[bool, str]:
    """A ratio's verdict: it fails only when its whole 95% interval lies above ``limit``;
    with the limit inside the interval it passes, and the note says it is inside the noise."""
    if c.ci_low > limit:
        return False, ""
    if c.ci_high >= limit:
        return True, "; the limit is inside the interval: inside the noise"
    return True, ""


@dataclass
class Report:
    machine: dict[str, Any]
    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    scale: list[ReadScaleResult] = field(default_factory=list)
    gc: list[GcResult] = field(default_factory=list)
    memory: MemoryResult | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    finished: dict[str, Any] = field(default_factory=dict)

    # -- targets ----------------------------------------------------------------------
    def verdicts(self) -> list[Verdict]:
        verdicts = [v for v in (row.verdict() for row in self.rows) if v is not None]
        for result in self.scale:
            if result.operation != "read":
                continue  # no target: shown for information
            c = result.ours
            passed, note = ratio_verdict(c, SCALE_LIMIT)
            verdicts.append(
                Verdict(
                    passed,
                    f"{result.store:<10} read with {result.big:,} sessions: {c.ratio:.3f}x the "
                    f"read with {result.small:,} (95% CI {c.ci_low:.3f}-{c.ci_high:.3f}; "
                    f"limit {SCALE_LIMIT:.2f}x){note}",
                )
            )
        for gc in self.gc:
            ok = gc.max_batch_seconds <= GC_BATCH_LIMIT_SECONDS and gc.remaining == 0
            verdicts.append(
                Verdict(
                    ok,
                    f"{gc.store:<10} gc of {gc.rows:,} expired rows: longest batch "
                    f"{gc.max_batch_seconds * 1000:.0f} ms (target <= "
                    f"{GC_BATCH_LIMIT_SECONDS * 1000:.0f} ms), {gc.remaining} left",
                )
            )
        return verdicts

    # -- rendering --------------------------------------------------------------------
    def markdown(self) -> str:
        out: list[str] = []
        out += self._machine_lines()
        out += ["", "### Operations and requests (per operation; ratio = ormsession / floor)", ""]
        out += self._rows_table()
        if self.scale:
            out += ["", "### Reads at scale", ""]
            out += self._scale_table()
        if self.gc:
            out += ["", "### gc of expired rows", ""]
            out += self._gc_table()
        if self.memory is not None:
            memory = self.memory
            out += [
                "",
                "### Memory per held session",
                "",
                f"{memory.ours_bytes:,.0f} bytes per opened `RequestSession` vs "
                f"{memory.floor_bytes:,.0f} bytes for the floor's dict "
                f"({memory.sessions:,} held at once, tracemalloc).",
            ]
        out += ["", "### Server-counted work per operation", ""]
        out += self._details()
        waits = self._waits()
        if waits:
            out += ["", "### Waits per operation", ""]
            out += [
                "Voluntary context switches of the benchmark's thread per operation: how often "
                "it slept until a reply came, ormsession against the floor.",
                "",
                *waits,
            ]
        if self.skipped or self.errors:
            out += ["", "### Not measured", ""]
            out += [f"- {name}: skipped ({why})" for name, why in self.skipped.items()]
            out += [f"- {name}: ERROR {why}" for name, why in self.errors.items()]
        out += ["", "### Targets", "", "```"]
        out += [verdict.line() for verdict in self.verdicts()]
        out += ["```"]
        return "\n".join(out) + "\n"

    def _machine_lines(self) -> list[str]:
        machine = {**self.machine, **self.finished}
        lines = ["### Machine", ""]
        lines += [f"- {key}: {value}" for key, value in machine.items()]
        if self.versions:
            lines += ["- servers: " + ", ".join(f"{k} {v}" for k, v in self.versions.items())]
        lines += ["- settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items())]
        return lines

    def _rows_table(self) -> list[str]:
        lines = [
            "| store | operation | ormsession µs | floor µs | ratio (IQR) "
            "| ormsession work | floor work | target |",
            "|---|---|---:|---:|---|---|---|---|",
        ]
        for row in self.rows:
            c = row.comparison
            verdict = row.verdict()
            mark = "" if verdict is None else ("PASS" if verdict.passed else "**FAIL**")
            lines.append(
                f"| {row.store} | {row.operation} | {c.a_us:.1f} | {c.b_us:.1f} | "
                f"{c.ratio:.3f} ({c.low:.2f}-{c.high:.2f}) | {_work(row.ours)} | "
                f"{_work(row.floor)} | {mark} |"
            )
        return lines

    def _scale_table(self) -> list[str]:
        lines = [
            "| store | operation | sessions | ormsession µs | ratio (IQR) | floor µs "
            "| floor ratio | target |",
            "|---|---|---|---:|---|---:|---|---|",
        ]
        for r in self.scale:
            mark = "PASS" if ratio_verdict(r.ours, SCALE_LIMIT)[0] else "**FAIL**"
            if r.operation != "read":
                mark = "(no target)"
            lines.append(
                f"| {r.store} | {r.operation} | {r.small:,} → {r.big:,} "
                f"| {r.ours.b_us:.1f} → {r.ours.a_us:.1f} | "
                f"{r.ours.ratio:.3f} ({r.ours.low:.2f}-{r.ours.high:.2f}) | "
                f"{r.floor.b_us:.1f} → {r.floor.a_us:.1f} | {r.floor.ratio:.3f} | {mark} |"
            )
        lines += [
            "",
            "Bulk load: " + ", ".join(f"{r.store} {r.load_seconds:.1f} s" for r in self.scale),
            "",
            "Size of the big set on disk (table + indexes): "
            + ", ".join(
                f"{r.store} {r.big_megabytes:.0f} MB"
                for r in self.scale
                if r.big_megabytes is not None
            ),
        ]
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
            ok = g.max_batch_seconds <= GC_BATCH_LIMIT_SECONDS and g.remaining == 0
            lines.append(
                f"| {g.store} | {g.rows:,} | {g.batch_size} ({g.smallest_batch}) | {g.batches} "
                f"| {g.total_seconds:.1f} | {g.max_batch_seconds * 1000:.1f} "
                f"| {g.median_batch_ms:.1f} | {g.p99_batch_ms:.1f} "
                f"| {g.remaining} | {'PASS' if ok else '**FAIL**'} |"
            )
        lines += [
            "",
            "Bulk load: " + ", ".join(f"{g.store} {g.load_seconds:.1f} s" for g in self.gc),
        ]
        return lines

    def _details(self) -> list[str]:
        lines = []
        for row in self.rows:
            if row.ours is None or row.floor is None:
                continue
            lines.append(
                f"- {row.store} / {row.operation}: ormsession {row.ours.describe()}; "
                f"floor {row.floor.describe()}"
            )
        return lines

    def _waits(self) -> list[str]:
        return [
            f"- {row.store} / {row.operation}: ormsession {row.waits[0]:.2f}, "
            f"floor {row.waits[1]:.2f}"
            for row in self.rows
            if row.waits is not None and row.ours is not None
        ]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


def _work(counts: Counts | None) -> str:
    if counts is None:
        return "(no I/O)"
    return f"{counts.total:g} {counts.unit}, {counts.writes:g} w"


# -- the machine ----------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory() -> str:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "?"


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
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return "?"
    return done.stdout.strip() or "?"


def machine_info() -> dict[str, Any]:
    packages: tuple[str, ...] = (
        "SQLAlchemy",
        "psycopg2-binary",
        "PyMySQL",
        "asyncpg",
        "asyncmy",
        "aiosqlite",
    )
    packages += ("redis", "couchbase", "Flask", "Werkzeug", "starlette", "httpx")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git_commit(),
        "cpu": f"{_cpu_model()}, {os.cpu_count()} cores",
        "ram": _memory(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": ", ".join(f"{name} {_package(name)}" for name in packages),
        "load average at start (1, 5, 15 min)": load_average(),
    }
