"""Command-line options the comparisons share (``benchmarks.ab``, ``benchmarks.cas_cost``,
``benchmarks.instructions``): which requests, how many rounds of how many requests."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["add_request_option", "add_round_options", "chosen"]


def add_request_option(parser: argparse.ArgumentParser, requests: Sequence[str]) -> None:
    """``--requests`` (default: all of ``requests``)."""
    parser.add_argument(
        "--requests", default=",".join(requests), help=f"comma-separated: {','.join(requests)}"
    )


def add_round_options(parser: argparse.ArgumentParser, requests: Sequence[str]) -> None:
    """``--requests`` (default: all of ``requests``), ``--rounds`` and ``--ops``."""
    add_request_option(parser, requests)
    parser.add_argument("--rounds", type=int, default=61, help="interleaved rounds")
    parser.add_argument("--ops", type=int, default=150, help="requests per series per round")


def chosen(
    parser: argparse.ArgumentParser, text: str, choices: Sequence[str], what: str
) -> list[str]:
    """The comma-separated ``text`` as a list; a usage error (exit 2) names the first entry
    that is not one of ``choices``."""
    picked = text.split(",")
    for item in picked:
        if item not in choices:
            parser.error(f"unknown {what} {item!r}; choose from {', '.join(choices)}")
    return picked
