"""``python -m benchmarks.ab``: this checkout's ormsession against an older commit's, in one run.

A change of a percent or two is below what separate benchmark runs can resolve on a shared
VM (the same request's ratio moves by ±0.015 from run to run). Here both versions serve the
same requests in the same interleaved rounds, each beside the floor: the older commit's
package is extracted with ``git archive`` into a temporary directory and imported under
another name (``ormsession_base``: its absolute imports rewritten), so the two never share a
module. The verdict is the median of the per-round ratios *new / base*; its interquartile
range on identical code is ±0.005 on the memory store and ±0.01-0.02 with I/O, so use 61
rounds or more.

    .venv/bin/python -m benchmarks.ab --base HEAD~1 --stores redis --requests starlette-read
    .venv/bin/python -m benchmarks.ab --base main --stores memory,couchbase --rounds 121

Both versions run on the same store (same key prefix or table: session ids never collide),
so they must agree on its schema. Requests: ``flask-read``, ``flask-write``,
``starlette-read``, ``starlette-write``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from benchmarks.options import add_round_options, chosen
from benchmarks.requests import REQUEST_KINDS, request_series
from benchmarks.stores import ALL_STORES, CPU_ONLY, managers_for, open_store
from benchmarks.timing import compare, run_rounds

__all__ = ["BASE_PACKAGE", "base_package", "main"]

BASE_PACKAGE = "ormsession_base"
_ROOT = Path(__file__).resolve().parent.parent
# The package's absolute imports, and the registry's lazy module paths in strings.
_IMPORT = re.compile(r"\b(from|import) ormsession\b")
_DOTTED = re.compile(r"([\"'])ormsession\.")


@contextlib.contextmanager
def base_package(revision: str) -> Iterator[str]:
    """The ``ormsession`` package of ``revision``, importable as :data:`BASE_PACKAGE` while
    the block runs (from a temporary directory put first on ``sys.path``)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "ormsession"],
        cwd=_ROOT,
        check=True,
        capture_output=True,
    ).stdout
    with tempfile.TemporaryDirectory(prefix="ormsession-ab-") as directory:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(directory, filter="data")
        package = Path(directory) / BASE_PACKAGE
        (Path(directory) / "ormsession").rename(package)
        for source in package.rglob("*.py"):
            text = source.read_text(encoding="utf-8")
            text = _IMPORT.sub(rf"\1 {BASE_PACKAGE}", text)
            source.write_text(_DOTTED.sub(rf"\1{BASE_PACKAGE}.", text), encoding="utf-8")
        sys.path.insert(0, directory)
        try:
            yield BASE_PACKAGE
        finally:
            sys.path.remove(directory)
            for name in [m for m in sys.modules if m.split(".")[0] == BASE_PACKAGE]:
                del sys.modules[name]


def compare_store(store: str, kinds: Sequence[str], rounds: int, ops: int) -> list[str]:
    """The A/B lines for one store."""
    lines: list[str] = []
    with contextlib.ExitStack() as stack:
        env = stack.enter_context(open_store(store))
        runner = stack.enter_context(asyncio.Runner())
        managers = {
            package: managers_for(env, runner, stack, package)
            for package in ("ormsession", BASE_PACKAGE)
        }
        ours = managers["ormsession"]
        floors = (env.floor(ours[0]), env.async_floor(ours[1]))
        for kind in kinds:
            group = {
                label: request_series(
                    kind, runner, stack, managers=managers[package], package=package
                )
                for label, package in (("new", "ormsession"), ("base", BASE_PACKAGE))
            }
            group["floor"] = request_series(kind, runner, stack, floors=floors)
            per_op = run_rounds(group, rounds=rounds, ops=ops, warmup_ops=20)
            new, base = compare(per_op, "new", "floor", ops), compare(per_op, "base", "floor", ops)
            paired = compare(per_op, "new", "base", ops)
            lines.append(
                f"{store:10} {kind:16} new {new.ratio:.3f} ({new.low:.3f}-{new.high:.3f})  "
                f"base {base.ratio:.3f} ({base.low:.3f}-{base.high:.3f})  "
                f"new/base {paired.ratio:.3f} ({paired.low:.3f}-{paired.high:.3f})  "
                f"floor {new.b_us:.0f} µs"
            )
            print(lines[-1], flush=True)
    return lines


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__)
    parser.add_argument("--base", required=True, help="the git revision to compare against")
    parser.add_argument(
        "--stores", default=CPU_ONLY, help=f"comma-separated: {CPU_ONLY},{','.join(ALL_STORES)}"
    )
    add_round_options(parser, REQUEST_KINDS)
    args = parser.parse_args(argv)
    args.requests = chosen(parser, args.requests, REQUEST_KINDS, "request")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    with base_package(args.base):
        for store in args.stores.split(","):
            compare_store(store, args.requests, args.rounds, args.ops)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
