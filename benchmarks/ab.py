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
import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.options import add_round_options, chosen
from benchmarks.requests import AsgiRunner, flask_app, flask_runner, starlette_app
from benchmarks.stores import ALL_STORES, CPU_ONLY, open_store
from benchmarks.timing import OpRunner, compare, run_rounds

__all__ = ["BASE_PACKAGE", "base_package", "main"]

BASE_PACKAGE = "ormsession_base"
REQUESTS = ("flask-read", "flask-write", "starlette-read", "starlette-write")
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


def _series(
    kind: str, package: str | None, managers: dict[str, Any], floors: Any, runner: Any
) -> tuple[OpRunner, AsgiRunner | None]:
    """One request series: ``kind`` through ``package``'s integration (None: the floor)."""
    framework, operation = kind.split("-")
    method, path = ("GET", "/read") if operation == "read" else ("POST", "/write")
    sync_floor, async_floor = floors
    if framework == "flask":
        manager = managers[package][0] if package else None
        app = flask_app(manager=manager, floor=None if package else sync_floor, **_pkg(package))
        return flask_runner(app, method, path), None
    manager = managers[package][1] if package else None
    app = starlette_app(manager=manager, floor=None if package else async_floor, **_pkg(package))
    asgi = AsgiRunner(app, runner)
    return asgi.series(method, path), asgi


def _pkg(package: str | None) -> dict[str, str]:
    return {"package": package} if package else {}


def compare_store(store: str, kinds: Sequence[str], rounds: int, ops: int) -> list[str]:
    """The A/B lines for one store."""
    lines: list[str] = []
    with contextlib.ExitStack() as stack:
        env = stack.enter_context(open_store(store))
        runner = stack.enter_context(asyncio.Runner())
        managers: dict[str, tuple[Any, Any]] = {}
        for package in ("ormsession", BASE_PACKAGE):
            module = importlib.import_module(package)
            flask_session = importlib.import_module(f"{package}.integrations.flask").FlaskSession
            manager = module.configure(url=env.url, session_class=flask_session, **env.options)
            stack.callback(manager.close)
            async_manager = runner.run(module.configure_async(url=env.async_url, **env.options))
            stack.callback(lambda m=async_manager: runner.run(m.close()))
            managers[package] = (manager, async_manager)
        floors = (env.floor(managers["ormsession"][0]), env.async_floor(managers["ormsession"][1]))
        for kind in kinds:
            group: dict[str, OpRunner] = {}
            for label, package in (("new", "ormsession"), ("base", BASE_PACKAGE), ("floor", None)):
                group[label], asgi = _series(kind, package, managers, floors, runner)
                if asgi is not None:
                    stack.callback(asgi.close)
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
    add_round_options(parser, REQUESTS)
    args = parser.parse_args(argv)
    args.requests = chosen(parser, args.requests, REQUESTS, "request")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    with base_package(args.base):
        for store in args.stores.split(","):
            compare_store(store, args.requests, args.rounds, args.ops)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
