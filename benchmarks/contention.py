"""How often saves give up under contention: N processes, each opening one shared session
and saving its own key in a loop, as fast as they can, on a real store. Prints, for each N,
the saves that ended in ``ConflictError`` (another writer won every compare-and-set) and
checks that every process's last value is stored (no save the app was told succeeded is
lost).

``python -m benchmarks.contention [--store postgresql] [--writers 2 4 8] [--saves 300]``
(stores as in :mod:`benchmarks.stores`)."""

from __future__ import annotations

import argparse
import multiprocessing
import time
from dataclasses import dataclass

import ormsession
from benchmarks.stores import ALL_STORES, open_store


@dataclass(frozen=True)
class Contention:
    writers: int
    saves: int
    gave_up: int
    seconds: float

    def line(self) -> str:
        share = 100 * self.gave_up / self.saves
        return (
            f"{self.writers} writers x {self.saves // self.writers} saves: "
            f"{self.gave_up} ConflictError ({share:.1f}%), {self.seconds:.1f} s"
        )


def _writer(url: str, session_id: str, index: int, saves: int) -> int:
    """Save key ``k<index>`` = 0, 1, ... ``saves - 1``; how many saves gave up."""
    gave_up = 0
    with ormsession.configure(url=url) as manager:
        for n in range(saves):
            session = manager.open(session_id)
            session[f"k{index}"] = n
            try:
                manager.save(session)
            except ormsession.ConflictError:
                gave_up += 1
        # The last value must be stored whatever happened before: saved until it is.
        while manager.open(session_id).get(f"k{index}") != saves - 1:
            session = manager.open(session_id)
            session[f"k{index}"] = saves - 1
            try:
                manager.save(session)
            except ormsession.ConflictError:
                continue
    return gave_up


def measure(url: str, writers: int, saves: int) -> Contention:
    with ormsession.configure(url=url) as manager:
        session = manager.open(None)
        session["start"] = True
        manager.save(session)
        session_id = session.id
        started = time.perf_counter()
        context = multiprocessing.get_context("spawn")  # no pooled connection shared
        with context.Pool(writers) as pool:
            args = [(url, session_id, index, saves) for index in range(writers)]
            gave_up = sum(pool.starmap(_writer, args))
        seconds = time.perf_counter() - started
        stored = dict(manager.open(session_id))
        expected = {f"k{index}": saves - 1 for index in range(writers)} | {"start": True}
        if stored != expected:
            raise AssertionError(f"lost a save: {stored} != {expected}")
        manager.destroy(manager.open(session_id))
    return Contention(writers, writers * saves, gave_up, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="postgresql", choices=ALL_STORES)
    parser.add_argument("--writers", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--saves", type=int, default=300, help="per writer")
    args = parser.parse_args(argv)
    with open_store(args.store) as env:
        for writers in args.writers:
            print(f"{args.store}: {measure(env.url, writers, args.saves).line()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
