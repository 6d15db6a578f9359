"""The ``ormsession`` command: schema migrations, cleanup, counting, and the demo app.

    ormsession db upgrade [--url URL] [--revision head] [--sql]
    ormsession db downgrade [--url URL] [--revision base]
    ormsession db current [--url URL]
    ormsession gc [--url URL] [--batch-size N] [--batch-seconds S]
    ormsession count [--url URL]
    ormsession demo [--url URL] [--host 127.0.0.1] [--port 8000]

The URL comes from ``--url``, else ``ORMSESSION_URL`` (or ``.env``), else the SQLite default.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from ormsession.errors import OrmsessionError
from ormsession.urls import redact_url

if TYPE_CHECKING:
    from ormsession.manager import SessionManager

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ormsession", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def with_url(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--url", help="store URL (default: ORMSESSION_URL, else SQLite)")
        return sub

    db = commands.add_parser("db", help="manage the SQL schema (Alembic migrations)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = with_url(db_commands.add_parser("upgrade", help="migrate to a revision"))
    upgrade.add_argument("--revision", default="head")
    upgrade.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    downgrade = with_url(db_commands.add_parser("downgrade", help="migrate down"))
    downgrade.add_argument("--revision", default="base", help="default: base (drops the table)")
    with_url(db_commands.add_parser("current", help="show the schema revision"))

    gc = with_url(commands.add_parser("gc", help="delete expired sessions, in batches"))
    gc.add_argument("--batch-size", type=int, default=None, help="rows per statement, at most")
    gc.add_argument(
        "--batch-seconds",
        type=float,
        default=None,
        help="a statement slower than this makes the next ones smaller",
    )
    gc.add_argument("--quiet", action="store_true", help="no progress output")
    with_url(commands.add_parser("count", help="count live sessions"))

    demo = with_url(commands.add_parser("demo", help="run the demo web app"))
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        return _dispatch(arguments)
    except OrmsessionError as exc:
        print(f"ormsession: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(arguments: argparse.Namespace) -> int:
    from ormsession.settings import load_config

    overrides = {"url": arguments.url} if arguments.url else {}
    config = load_config(**overrides)
    if arguments.command == "db":
        return _db(
            arguments, config.url.get_secret_value(), config.table_name, config.store_timeout
        )
    if arguments.command == "demo":
        from ormsession.demo import serve

        return serve(config, host=arguments.host, port=arguments.port)
    from ormsession.configure import configure

    # Maintenance must not migrate behind the operator's back, nor refuse to count an
    # old schema: the schema is `db upgrade`'s business.
    with configure(config=config, auto_migrate=False, schema_check=False) as manager:
        if arguments.command == "count":
            print(manager.count())
            return 0
        expected = _expired_count(manager)
        progress = None if arguments.quiet else _Progress(sys.stderr, expected)
        total = manager.gc(
            batch_size=arguments.batch_size,
            batch_seconds=arguments.batch_seconds,
            progress=progress,
        )
        if progress is not None:
            progress.finish(total)
        else:
            print(total)
        return 0


def _db(arguments: argparse.Namespace, url: str, table_name: str, timeout: float) -> int:
    from ormsession import schema

    if arguments.db_command == "current":
        revision = schema.current_revision(url, table_name=table_name, timeout=timeout)
        print(revision or "(none: run `ormsession db upgrade`)")
        return 0
    if arguments.db_command == "upgrade" and arguments.sql:
        from alembic import command

        command.upgrade(
            schema.alembic_config(url=url, table_name=table_name), arguments.revision, sql=True
        )
        return 0
    action = schema.upgrade if arguments.db_command == "upgrade" else schema.downgrade
    action(url, arguments.revision, table_name=table_name, timeout=timeout)
    revision = schema.current_revision(url, table_name=table_name, timeout=timeout)
    print(f"{redact_url(url)}: now at {revision or 'base'}")
    return 0


def _expired_count(manager: SessionManager) -> int | None:
    """How many sessions gc will delete, where the store can tell cheaply (SQL: an index
    range count); TTL stores expire on their own and have nothing to count."""
    count_expired = getattr(manager.repository, "count_expired", None)
    if count_expired is None:
        return None
    return int(count_expired(manager.policy.now_us()))


class _Progress:
    """A progress bar for gc runs, redrawn in place on a terminal."""

    WIDTH = 30

    def __init__(self, stream: TextIO, expected: int | None) -> None:
        self._stream = stream
        self._expected = expected
        self._started = time.monotonic()
        self._tty = stream.isatty()

    def line(self, total: int) -> str:
        rate = total / max(time.monotonic() - self._started, 1e-6)
        if not self._expected:
            return f"deleted {total:,} expired sessions ({rate:,.0f}/s)"
        share = min(total / self._expected, 1.0)
        filled = round(share * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        return f"[{bar}] {share:4.0%} {total:,}/{self._expected:,} ({rate:,.0f}/s)"

    def __call__(self, total: int) -> None:
        if self._tty:
            self._stream.write("\r" + self.line(total))
            self._stream.flush()

    def finish(self, total: int) -> None:
        if self._tty:
            self._stream.write("\n")
        elapsed = time.monotonic() - self._started
        self._stream.write(f"deleted {total:,} expired sessions in {elapsed:.1f}s\n")
        print(total)
