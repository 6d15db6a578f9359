"""``python -m benchmarks.instructions``: instructions per request, ormsession against the
floor, counted by valgrind's callgrind.

Timings on a shared VM move by a few percent from run to run, more than a change of a
percent; ``--bytecodes`` counts exactly but sees only Python. Callgrind counts every
instruction the process runs (the interpreter, C extensions, drivers, libc), the same total
for the same binary and inputs whatever else the machine is doing. Each side runs in its own
process under callgrind twice, after the same set-up and warm-up: once with ``--short``
requests, once with ``--long``. The difference over the extra requests is the count per
request, with imports, set-up and warm-up cancelled out.

    .venv/bin/python -m benchmarks.instructions --stores memory,redis --requests starlette-read

Instructions are not time. ormsession's extra instructions are mostly the interpreter's
(frames, attribute and dict lookups), which runs fewer instructions per ns than the C the
rest of a request is made of: on the memory store +1.3 % instructions came to +3 % time.
Only the client process is counted: a store's server (Redis, the Couchbase test server)
runs in its own process, outside callgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.options import add_request_option, chosen
from benchmarks.requests import REQUEST_KINDS, request_series
from benchmarks.stores import ALL_STORES, CPU_ONLY, managers_for, open_store

__all__ = ["Count", "count_per_request", "main", "total_instructions"]

SIDES = ("ours", "floor")
WARMUP_REQUESTS = 50
_TOTALS = re.compile(r"^totals:\s+(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Count:
    """Instructions per request of both sides of one request kind on one store."""

    store: str
    kind: str
    ours: float
    floor: float

    @property
    def ratio(self) -> float:
        return self.ours / self.floor

    def line(self) -> str:
        return (
            f"{self.store:10} {self.kind:16} ours {self.ours:>12,.0f}  floor "
            f"{self.floor:>12,.0f}  ratio {self.ratio:.4f}  ({self.ours - self.floor:+,.0f})"
        )


def total_instructions(callgrind_out: str) -> int:
    """The ``totals:`` line of a callgrind output file (instructions executed)."""
    found = _TOTALS.search(callgrind_out)
    if found is None:
        raise ValueError("no 'totals:' line in the callgrind output")
    return int(found.group(1))


def _counted_run(side: str, kind: str, store: str, requests: int) -> int:
    """Instructions of one child process that sets up ``store`` and sends ``requests``."""
    with tempfile.TemporaryDirectory(prefix="ormsession-callgrind-") as directory:
        out = Path(directory) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks.instructions",
            "--child",
            side,
            kind,
            store,
            str(requests),
        ]
        # A fixed hash seed: set and dict layouts (and so their probe counts) then repeat.
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"the callgrind run of {side} {kind} on {store} failed "
                f"(exit {done.returncode}):\n{done.stderr[-2000:]}"
            )
        return total_instructions(out.read_text())


def count_per_request(kind: str, store: str, short: int, long: int) -> Count:
    """``kind`` requests on ``store``: both sides' instructions per request."""
    if not 0 < short < long:
        raise ValueError(f"need 0 < short < long, not {short} and {long}")
    runs = [(side, requests) for side in SIDES for requests in (short, long)]
    # The four processes at once, as many as there are cores: each counts only its own
    # instructions, so running beside the others changes no total (each sets up its own
    # store: a database, key prefix or test server of its own).
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counted = pool.map(lambda run: _counted_run(run[0], kind, store, run[1]), runs)
        totals = dict(zip(runs, counted, strict=True))
    ours, floor = ((totals[side, long] - totals[side, short]) / (long - short) for side in SIDES)
    return Count(store, kind, ours, floor)


def _child(side: str, kind: str, store: str, requests: int) -> None:
    """Inside callgrind: set up, warm up, then send ``requests`` requests of ``kind``."""
    with open_store(store) as env, contextlib.ExitStack() as stack:
        runner = asyncio.Runner()
        stack.callback(runner.close)
        managers = managers_for(env, runner, stack)
        if side == "ours":
            series = request_series(kind, runner, stack, managers=managers)
        else:
            floors = (env.floor(managers[0]), env.async_floor(managers[1]))
            series = request_series(kind, runner, stack, floors=floors)
        series(WARMUP_REQUESTS)
        series(requests)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions", description=__doc__.split("\n\n")[0]
    )
    stores = (CPU_ONLY, *ALL_STORES)
    parser.add_argument("--stores", default=CPU_ONLY, help=f"comma-separated: {','.join(stores)}")
    add_request_option(parser, REQUEST_KINDS)
    parser.add_argument("--short", type=int, default=100, help="requests of the short run")
    parser.add_argument("--long", type=int, default=600, help="requests of the long run")
    parser.add_argument(
        "--child", nargs=4, metavar=("SIDE", "KIND", "STORE", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child is None:
        args.stores = chosen(parser, args.stores, stores, "store")
        args.requests = chosen(parser, args.requests, REQUEST_KINDS, "request")
        if not 0 < args.short < args.long:
            parser.error(f"need 0 < --short < --long, not {args.short} and {args.long}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.child is not None:
        side, kind, store, requests = args.child
        _child(side, kind, store, int(requests))
        return 0
    for store in args.stores:
        for kind in args.requests:
            print(count_per_request(kind, store, args.short, args.long).line(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
