"""The ormsession command: schema migrations, cleanup, counting, and the demo app.

    ormsession db upgrade [--url URL] [--revision head] [--sql]
    ormsession db downgrade [--url URL] [--revision base] [--yes]
    ormsession db current [--url URL]
    ormsession gc [--url URL] [--batch-size N] [--batch-seconds S|none] [--dry-run] [--quiet]
    ormsession count [--url URL]
    ormsession sessions list --user ID [--url URL]
    ormsession sessions revoke --user ID (--handle H | --all) [--url URL]
    ormsession stats [--url URL] [--sample N]
    ormsession doctor [--url URL] [--max-skew S]
    ormsession demo [--url URL] [--host 127.0.0.1] [--port 8000]
    ormsession --version

The URL comes from --url, else ORMSESSION_URL (or .env), else the SQLite default.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ormsession.admin import doctor, sessions_list, sessions_revoke, stats
from ormsession.diagnostics import DEFAULT_MAX_SKEW
from ormsession.errors import OrmsessionError, SchemaError
from ormsession.urls import redact_url, scheme_of, upgrade_command

if TYPE_CHECKING:
    from ormsession.config import Config
    from ormsession.manager import SessionManager

__all__ = ["main"]


class CommandError(Exception):
    """A command that cannot run as asked: printed as one ``ormsession: error:`` line."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ormsession")
    except PackageNotFoundError:  # running from a checkout that was never installed
        from ormsession import __version__

        return __version__


def _batch_seconds(text: str) -> float | None:
    """A number of seconds, or "none" (also 0): no time budget, batches stay full size."""
    if text.strip().lower() in ("none", "0", "0.0"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds or none") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ormsession",
        description=(__doc__ or "").split("\n", 1)[0],
        epilog="The URL comes from --url, else ORMSESSION_URL (or .env), else the SQLite "
        "default. Errors print one 'ormsession: error: ...' line and exit 1.",
    )
    parser.add_argument("--version", action="version", version=f"ormsession {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_url(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--url", help="store URL (default: ORMSESSION_URL, else SQLite)")
        return sub

    db = commands.add_parser("db", help="manage the SQL schema (Alembic migrations)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = with_url(db_commands.add_parser("upgrade", help="migrate to a revision"))
    upgrade.add_argument("--revision", default="head", help="default: head (the latest)")
    upgrade.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    downgrade = with_url(db_commands.add_parser("downgrade", help="migrate down (asks first)"))
    downgrade.add_argument("--revision", default="base", help="default: base (drops the table)")
    downgrade.add_argument(
        "--yes", action="store_true", help="do not ask (required when stdin is not a terminal)"
    )
    with_url(db_commands.add_parser("current", help="show the schema revision"))

    gc = with_url(commands.add_parser("gc", help="delete expired sessions, in batches"))
    gc.add_argument("--batch-size", type=int, default=None, help="rows per statement, at most")
    gc.add_argument(
        "--batch-seconds",
        type=_batch_seconds,
        default=argparse.SUPPRESS,
        help="a statement slower than this makes the next ones smaller (none: never)",
    )
    gc.add_argument("--quiet", action="store_true", help="no progress output")
    gc.add_argument(
        "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
    )
    with_url(commands.add_parser("count", help="count live sessions"))

    sessions = commands.add_parser("sessions", help="a user's sessions: list, revoke")
    sessions_commands = sessions.add_subparsers(dest="sessions_command", required=True)
    listing = with_url(sessions_commands.add_parser("list", help="list a user's live sessions"))
    listing.add_argument("--user", required=True, help="the user's id, as the app logs in")
    revoke = with_url(sessions_commands.add_parser("revoke", help="sign a user's sessions out"))
    revoke.add_argument("--user", required=True, help="the user's id, as the app logs in")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--handle", help="the session's handle (from sessions list)")
    which.add_argument("--all", action="store_true", help="every session of the user")

    stats = with_url(commands.add_parser("stats", help="live sessions, sizes, the oldest"))
    stats.add_argument(
        "--sample", type=int, default=10_000, help="sessions measured for sizes, at most"
    )
    doctor = with_url(commands.add_parser("doctor", help="check the store and its setup"))
    doctor.add_argument(
        "--max-skew",
        type=float,
        default=DEFAULT_MAX_SKEW,
        help=f"seconds the store's clock may be off (default {DEFAULT_MAX_SKEW:g})",
    )

    demo = with_url(commands.add_parser("demo", help="run the demo web app"))
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        return _dispatch(arguments)
    except SchemaError as exc:
        _error(_with_fix(str(exc), arguments))
    except (OrmsessionError, CommandError) as exc:
        _error(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`ormsession db upgrade --sql | head`): no traceback, and
        # stdout pointed at /dev/null so the interpreter's last flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        # Alembic's own errors (an unknown revision...): its message, not its traceback.
        if not type(exc).__module__.startswith("alembic"):
            raise
        _error(redact_url(str(exc)))
    return 1


def _error(message: str) -> None:
    # One line, whatever the message (Alembic's can span several): scripts grep for it.
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"ormsession: error: {line}", file=sys.stderr)


def _dispatch(arguments: argparse.Namespace) -> int:
    from ormsession.settings import load_config

    overrides = {"url": arguments.url} if arguments.url else {}
    if arguments.command == "doctor":
        return doctor(overrides, max_skew=arguments.max_skew)
    config = load_config(**overrides)
    if arguments.command == "db":
        return _db(arguments, config)  # migrations switch to a synchronous driver themselves
    config = _synchronous(config)
    if arguments.command == "demo":
        from ormsession.demo import serve

        return serve(config, host=arguments.host, port=arguments.port)
    _refuse_missing_sqlite_file(config, arguments, _WHAT.get(arguments.command, "clean up"))
    from ormsession.configure import configure

    options: dict[str, Any] = {}
    if getattr(arguments, "batch_seconds", 0) is None:
        options["gc_batch_seconds"] = None  # "none" overrides the configured budget too
    # Maintenance must not migrate behind the operator's back, nor refuse to count an
    # old schema: the schema is `db upgrade`'s business.
    with configure(config=config, auto_migrate=False, schema_check=False, **options) as manager:
        if arguments.command == "count":
            print(manager.count())
            return 0
        if arguments.command == "sessions":
            return _sessions(manager, arguments)
        if arguments.command == "stats":
            return stats(manager, sample=arguments.sample)
        return _gc(manager, arguments)


_WHAT = {"count": "count", "sessions": "list or revoke", "stats": "measure"}


def _synchronous(config: Config) -> Config:
    """The commands run synchronously: an asyncio app's ``ORMSESSION_URL``
    (``postgresql+asyncpg://``) is read through the same database's synchronous driver,
    as ``db upgrade`` does, instead of failing with "use configure_async()"."""
    from ormsession.repositories.sql.urls import synchronous_url

    url = config.url.get_secret_value()
    sync = synchronous_url(url)
    return config if sync == url else config.replace(url=sync)


def _gc(manager: SessionManager, arguments: argparse.Namespace) -> int:
    if arguments.dry_run:
        report = manager.run_gc(dry_run=True)
        if not arguments.quiet:
            print(f"would delete {report.removed:,} expired sessions (dry run)", file=sys.stderr)
        print(report.removed)
        return 0
    expected = _expired_count(manager)
    progress = None if arguments.quiet else _Progress(sys.stderr, expected)
    report = manager.run_gc(
        batch_size=arguments.batch_size,
        batch_seconds=getattr(arguments, "batch_seconds", None),
        progress=progress,
    )
    total = report.removed
    if report.lock_held_elsewhere:
        # Not an error: another node is doing this very work (exit 0, stdout 0).
        if not arguments.quiet:
            print(
                "gc skipped: another process holds the gc lock of this store: nothing deleted",
                file=sys.stderr,
            )
        print(0)
        return 0
    if progress is not None:
        progress.finish(total)
    # The bare number is for scripts; a person at a terminal has just read it on stderr.
    if progress is None or not (progress.tty and sys.stdout.isatty()):
        print(total)
    return 0


def _sessions(manager: SessionManager, arguments: argparse.Namespace) -> int:
    if arguments.sessions_command == "list":
        return sessions_list(manager, arguments.user)
    return sessions_revoke(manager, arguments.user, handle=arguments.handle)


def _db(arguments: argparse.Namespace, config: Config) -> int:
    from ormsession import schema

    url, table_name, timeout = (
        config.url.get_secret_value(),
        config.table_name,
        config.store_timeout,
    )
    if arguments.db_command == "current":
        _refuse_missing_sqlite_file(config, arguments, "show")
        revision = schema.current_revision(url, table_name=table_name, timeout=timeout)
        print(revision or f"(none: run {_fix_command(arguments)})")
        return 0
    if arguments.db_command == "upgrade" and arguments.sql:
        from alembic import command

        command.upgrade(
            schema.alembic_config(url=url, table_name=table_name), arguments.revision, sql=True
        )
        return 0
    if arguments.db_command == "downgrade":
        _refuse_missing_sqlite_file(config, arguments, "downgrade")
        _confirm_downgrade(config, arguments.revision, yes=arguments.yes)
    action = schema.upgrade if arguments.db_command == "upgrade" else schema.downgrade
    action(url, arguments.revision, table_name=table_name, timeout=timeout)
    revision = schema.current_revision(url, table_name=table_name, timeout=timeout)
    print(f"{redact_url(url)}: now at {revision or 'base'}")
    return 0


def _confirm_downgrade(config: Config, revision: str, *, yes: bool) -> None:
    """A downgrade drops data (to base: the table and every session in it): it runs only
    when confirmed, by --yes or at the terminal."""
    where = f"{config.table_name!r} in {config.url}"
    loss = (
        f"drops the session table {where} and every session in it"
        if revision == "base"
        else f"undoes the migrations of the session table {where} after {revision}, "
        "dropping their columns and data"
    )
    if yes:
        return
    if not sys.stdin.isatty():
        raise CommandError(f"db downgrade {loss}: pass --yes to confirm (stdin is no terminal)")
    print(f"db downgrade {loss}.", file=sys.stderr)
    answer = input("Go on? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise CommandError("db downgrade cancelled: nothing was changed")


# -- where the URL came from, for the command that fixes an error --------------------------


def _url_origin(arguments: argparse.Namespace) -> str:
    """ "option" (--url), "environment", ".env" or "default"."""
    if getattr(arguments, "url", None):
        return "option"
    if any(name.upper() == "ORMSESSION_URL" for name in os.environ):
        return "environment"
    env_file = Path(".env")
    if env_file.is_file():
        from dotenv import dotenv_values

        if any(name.upper() == "ORMSESSION_URL" for name in dotenv_values(env_file)):
            return ".env"
    return "default"


def _fix_command(arguments: argparse.Namespace) -> str:
    """``ormsession db upgrade`` for the store this command used: with the URL as the user
    gave it (its password as a placeholder), or as ``"$ORMSESSION_URL"`` when it came from
    the environment. Without a URL (.env, the default) it reads the same place again."""
    origin = _url_origin(arguments)
    if origin == "option":
        return upgrade_command(arguments.url)
    if origin == "environment":
        return 'ormsession db upgrade --url "$ORMSESSION_URL"'
    return "ormsession db upgrade"


_LIBRARY_FIX = re.compile(r"run: ormsession db upgrade(?: --url (?:'[^']*'|\S+))?")


def _with_fix(message: str, arguments: argparse.Namespace) -> str:
    """The library's error names ``ormsession db upgrade`` for the URL the store was opened
    with (SQLAlchemy's rendering, the driver added): name it as the user gave it, or the
    variable it came from."""
    return _LIBRARY_FIX.sub(lambda _: f"run: {_fix_command(arguments)}", message)


def _refuse_missing_sqlite_file(config: Config, arguments: argparse.Namespace, what: str) -> None:
    """Connecting to SQLite creates the file: a command that only reads must not leave an
    empty database behind (typically ./ormsession.sqlite3, from a mistyped or missing URL)."""
    url = config.url.get_secret_value()
    if scheme_of(url).split("+", 1)[0] != "sqlite":
        return
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).resolve()
    if not path.exists():
        raise CommandError(
            f"no SQLite database at {path}: nothing to {what}. Create it with: "
            f"{_fix_command(arguments)}"
        )


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
        self.tty = stream.isatty()

    def line(self, total: int) -> str:
        rate = total / max(time.monotonic() - self._started, 1e-6)
        if not self._expected:
            return f"deleted {total:,} expired sessions ({rate:,.0f}/s)"
        share = min(total / self._expected, 1.0)
        filled = round(share * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        return f"[{bar}] {share:4.0%} {total:,}/{self._expected:,} ({rate:,.0f}/s)"

    def __call__(self, total: int) -> None:
        if self.tty:
            self._stream.write("\r" + self.line(total))
            self._stream.flush()

    def finish(self, total: int) -> None:
        if self.tty:
            self._stream.write("\n")
        elapsed = time.monotonic() - self._started
        self._stream.write(f"deleted {total:,} expired sessions in {elapsed:.1f}s\n")
