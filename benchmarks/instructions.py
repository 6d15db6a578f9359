"""``python -m benchmarks.instructions``: the CPU instructions a full request costs this
process, ormsession's against the driver floor's, counted by valgrind's callgrind.

Instruction counts do not move with the machine's load, so they show where a request's
time goes while wall-clock timings are too noisy to tell (a busy shared machine). They
leave out what the database server does in its own process (the same statements on both
sides) and the waits; SQLite runs in-process, so its counts include the database's work.

It runs itself again under ``valgrind --tool=callgrind`` (needs valgrind and a C compiler
for the callgrind client requests) and counts each series of requests between a zeroing
and a dump of the counters, every thread of the process included (aiosqlite's, the
watchdog's)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import POOL_ROW
from benchmarks.requests import AsgiRunner, flask_app, flask_runner, starlette_app
from benchmarks.stores import managers_for, open_store

_CLIENT_REQUESTS = """
#include <valgrind/callgrind.h>
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_dump(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
"""
KINDS = (("read-only", "GET", "/read"), ("write", "POST", "/write"))


def _count(stores: Sequence[str], requests: int, library: str) -> None:
    """Inside valgrind: every series, zeroed before and dumped after with its label."""
    counters = ctypes.CDLL(library)
    for name in stores:
        with contextlib.ExitStack() as stack:
            _count_store(name, requests, counters, stack)


def _count_store(name: str, requests: int, counters: Any, stack: contextlib.ExitStack) -> None:
    env = stack.enter_context(open_store(name))
    runner = stack.enter_context(asyncio.Runner())
    manager, async_manager = managers_for(env, runner, stack)
    floor, async_floor = env.floor(manager), env.async_floor(async_manager)
    stack.callback(floor.close)
    runner.run(async_floor.start())
    stack.callback(lambda: runner.run(async_floor.close()))
    sides: dict[str, tuple[Any, Any]] = {
        "ours": (flask_app(manager=manager), starlette_app(manager=async_manager)),
        "floor": (flask_app(floor=floor), starlette_app(floor=async_floor)),
    }
    if env.engine_floors is not None:
        pooled, async_pooled = env.engine_floors(manager, async_manager)
        sides["pool"] = (flask_app(floor=pooled), starlette_app(floor=async_pooled))
    for framework in ("Flask", "Starlette"):
        for kind, method, path in KINDS:
            for side, apps in sides.items():
                if framework == "Flask":
                    series: Callable[[int], int] = flask_runner(apps[0], method, path)
                else:
                    asgi = AsgiRunner(apps[1], runner)
                    stack.callback(asgi.close)
                    series = asgi.series(method, path)
                series(30)  # warm: caches, pools, the statement caches
                counters.cg_zero()
                series(requests)
                label = f"{name}|{framework} request, {kind}|{side}|{requests}"
                counters.cg_dump(label.encode())


def _parse(directory: Path) -> dict[tuple[str, str, str], float]:
    """Instructions per request of each dumped series: (store, operation, side) -> count."""
    found = {}
    for path in directory.glob("callgrind.out*"):
        text = path.read_text(errors="replace")
        label = re.search(r"^desc: Trigger: Client Request: (.*)$", text, re.MULTILINE)
        total = re.search(r"^(?:totals|summary): (\d+)", text, re.MULTILINE)
        if label and total:
            store, operation, side, count = label.group(1).split("|")
            found[(store, operation, side)] = int(total.group(1)) / int(count)
    return found


def table(counts: dict[tuple[str, str, str], float]) -> str:
    """Markdown: per request, ormsession's and the floor's instructions, their ratio and
    difference; the SQLAlchemy-pool floor's where there is one."""
    lines = [
        "| store | request | ormsession k instr | floor k instr | ratio | difference k instr |",
        "|---|---|---:|---:|---:|---:|",
    ]
    keys = sorted({(store, operation) for store, operation, _ in counts})
    for store, operation in keys:
        floor = counts.get((store, operation, "floor"))
        for side, label in (("ours", operation), ("pool", POOL_ROW.format(operation))):
            value = counts.get((store, operation, side))
            if value is None or floor is None:
                continue
            lines.append(
                f"| {store} | {label} | {value / 1e3:,.0f} | {floor / 1e3:,.0f} "
                f"| {value / floor:.3f} | {(value - floor) / 1e3:+,.0f} |"
            )
    return "\n".join(lines) + "\n"


def _under_valgrind(stores: str, requests: int, directory: Path) -> int:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if shutil.which("valgrind") is None or compiler is None:
        print("needs valgrind and a C compiler (cc)", file=sys.stderr)
        return 2
    source = directory / "client_requests.c"
    source.write_text(_CLIENT_REQUESTS, encoding="utf-8")
    library = directory / "client_requests.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", library, source], check=True)
    command = [
        "valgrind", "--tool=callgrind", "--dump-instr=no", "--collect-systime=no",
        f"--callgrind-out-file={directory}/callgrind.out.%p",
        sys.executable, "-m", "benchmarks.instructions", "--stores", stores,
        "--requests", str(requests), "--inside", str(library),
    ]  # fmt: skip
    done = subprocess.run(command, stderr=subprocess.DEVNULL, env=os.environ.copy())
    return done.returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--stores", default="sqlite,postgresql,mariadb,redis")
    parser.add_argument("--requests", type=int, default=200, help="per series (200)")
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    stores = [name.strip() for name in args.stores.split(",") if name.strip()]
    if args.inside:
        _count(stores, args.requests, args.inside)
        return 0
    with tempfile.TemporaryDirectory(prefix="ormsession-instructions-") as name:
        code = _under_valgrind(",".join(stores), args.requests, Path(name))
        print(table(_parse(Path(name))))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
