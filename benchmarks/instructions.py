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
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import POOL_ROW
from benchmarks.requests import AsgiRunner, flask_app, flask_runner, starlette_app
from benchmarks.stores import open_store, sides_for

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
    manager, async_manager, floor, async_floor = sides_for(env, runner, stack)
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
                _settled()
                counters.cg_zero()
                series(requests)
                label = f"{name}|{framework} request, {kind}|{side}|{requests}"
                counters.cg_dump(label.encode())


def _settled() -> None:
    """As the timed rounds do: the set-up's objects out of the collector's way, so a full
    collection of them does not land in one series' count."""
    gc.collect()
    gc.freeze()


def _count_steps(stores: Sequence[str], calls: int, library: str) -> None:
    """Inside valgrind: the steps of one SQL operation one by one, ormsession's and the
    floor's (labelled ``store|step|side|calls``)."""
    counters = ctypes.CDLL(library)
    for name in stores:
        with contextlib.ExitStack() as stack:
            env = stack.enter_context(open_store(name))
            runner = stack.enter_context(asyncio.Runner())
            manager, async_manager, floor, async_floor = sides_for(env, runner, stack)
            for step, side, work in _steps(manager, async_manager, floor, async_floor, runner):
                work(20)
                _settled()
                counters.cg_zero()
                work(calls)
                counters.cg_dump(f"{name}|{step}|{side}|{calls}".encode())


def _steps(
    manager: Any, async_manager: Any, floor: Any, async_floor: Any, runner: asyncio.Runner
) -> list[tuple[str, str, Callable[[int], object]]]:
    """(step, side, run ``n`` times): a SQL operation taken apart."""
    from datetime import UTC, datetime

    from sqlalchemy.util import greenlet_spawn

    from benchmarks.floors import key_of
    from ormsession.expiry import now_us
    from ormsession.repositories.sql.deadlines import operation_deadline

    repository, async_repository = manager.repository, async_manager.repository
    engine, async_engine = repository.engine, async_repository.engine.sync_engine
    key = key_of("instructions")

    def repeat(call: Callable[[], object]) -> Callable[[int], object]:
        return lambda n: [call() for _ in range(n)]

    def repeat_async(call: Callable[[], Any]) -> Callable[[int], object]:
        async def calls(n: int) -> None:
            for _ in range(n):
                await call()

        return lambda n: runner.run(calls(n))

    def floor_pool() -> None:
        floor.pool.idle.append(floor.pool.get())

    def deadline() -> None:
        with operation_deadline(5.0):
            pass

    connection = engine.raw_connection()
    raw, bound = connection.dbapi_connection, repository._bound
    connection.close()

    def statement_bound() -> None:
        bound.finish(raw, bound.start(raw, time.monotonic() + 5.0))

    async def timeout() -> None:
        async with asyncio.timeout(5.0):
            pass

    def floor_read_params() -> tuple[Any, ...]:
        return (key, floor.bind_time(datetime.now(UTC)))

    def sqlalchemy_pool() -> None:
        engine.raw_connection().close()

    def read() -> object:
        return repository.read(key, now_us())

    def floor_read() -> object:
        return floor._run(floor.sql.read, floor_read_params(), True)

    def bridge() -> Any:
        return greenlet_spawn(lambda: None)

    def bridged_pool() -> Any:
        return greenlet_spawn(lambda: async_engine.raw_connection().close())

    def async_read() -> Any:
        return async_repository.read(key, now_us())

    def async_floor_read() -> Any:
        return async_floor.fetch(async_floor.sql.read, floor_read_params())

    return [
        ("pool checkout + return", "ours (SQLAlchemy)", repeat(sqlalchemy_pool)),
        ("pool checkout + return", "floor", repeat(floor_pool)),
        ("operation deadline", "ours", repeat(deadline)),
        ("statement bound", "ours", repeat(statement_bound)),
        ("read statement, sync", "ours", repeat(read)),
        ("read statement, sync", "floor", repeat(floor_read)),
        ("greenlet_spawn (nothing)", "ours", repeat_async(bridge)),
        ("greenlet_spawn (checkout + return)", "ours", repeat_async(bridged_pool)),
        ("asyncio.timeout", "ours", repeat_async(timeout)),
        ("read statement, asyncio", "ours", repeat_async(async_read)),
        ("read statement, asyncio", "floor", repeat_async(async_floor_read)),
    ]


def steps_table(counts: dict[tuple[str, str, str], float]) -> str:
    lines = ["| store | step | side | k instr per call |", "|---|---|---|---:|"]
    for (store, step, side), value in counts.items():
        lines.append(f"| {store} | {step} | {side} | {value / 1e3:,.1f} |")
    return "\n".join(lines) + "\n"


def _parse(directory: Path) -> dict[tuple[str, str, str], float]:
    """Instructions per request of each dumped series: (store, operation, side) -> count."""
    found = {}
    for path in sorted(directory.glob("callgrind.out*"), key=lambda p: (len(p.name), p.name)):
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


def _under_valgrind(stores: str, requests: int, directory: Path, *more: str) -> int:
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
        f"--log-file={directory}/valgrind.log",
        sys.executable, "-m", "benchmarks.instructions", "--stores", stores,
        "--requests", str(requests), "--inside", str(library), *more,
    ]  # fmt: skip
    done = subprocess.run(command, env=os.environ.copy())
    return done.returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--stores", default="sqlite,postgresql,mariadb,redis")
    parser.add_argument("--requests", type=int, default=200, help="per series (200)")
    parser.add_argument(
        "--steps", action="store_true", help="a SQL operation's steps one by one, not requests"
    )
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    stores = [name.strip() for name in args.stores.split(",") if name.strip()]
    if args.inside:
        (_count_steps if args.steps else _count)(stores, args.requests, args.inside)
        return 0
    with tempfile.TemporaryDirectory(prefix="ormsession-instructions-") as name:
        more = ("--steps",) if args.steps else ()
        code = _under_valgrind(",".join(stores), args.requests, Path(name), *more)
        counts = _parse(Path(name))
        print(steps_table(counts) if args.steps else table(counts))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
