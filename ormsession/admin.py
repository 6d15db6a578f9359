"""The admin commands of ``ormsession``: ``sessions list|revoke``, ``stats``, ``doctor``.

Each prints to stdout and returns the exit status. Nothing printed names a session id, a
storage key or a password: a user's sessions are listed by handle (the admin's name for
one, as it is the user's on a "where you're signed in" page), URLs are redacted.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ormsession.diagnostics import Check, diagnostics_of
from ormsession.errors import ConfigurationError, MissingDriverError, OrmsessionError
from ormsession.expiry import from_us, now_us

if TYPE_CHECKING:
    from ormsession.manager import SessionManager

__all__ = ["doctor", "sessions_list", "sessions_revoke", "stats"]

_COLUMNS = ("handle", "created", "last seen", "expires", "user agent", "ip")


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%SZ")


def sessions_list(manager: SessionManager, user_id: str) -> int:
    """The user's live sessions, most recently seen first, one per line (a header first)."""
    rows = [
        (
            item.handle,
            _when(item.created),
            _when(item.last_seen),
            _when(item.expires),
            item.user_agent or "-",
            item.ip or "-",
        )
        for item in manager.sessions_of(user_id)
    ]
    if not rows:
        print(f"no live sessions of user {user_id!r}", file=sys.stderr)
        return 0
    widths = [max(len(row[i]) for row in [_COLUMNS, *rows]) for i in range(len(_COLUMNS) - 1)]
    for row in [_COLUMNS, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
    return 0


def sessions_revoke(manager: SessionManager, user_id: str, *, handle: str | None) -> int:
    """End one session of the user (``handle``) or all of them; exit 1 when the handle
    names no live session of theirs (a typo must not look like success)."""
    if handle is None:
        ended = manager.revoke_all(user_id)
        print(f"revoked {ended} session{'' if ended == 1 else 's'} of user {user_id!r}")
        return 0
    if manager.revoke(user_id, handle):
        print(f"revoked session {handle} of user {user_id!r}")
        return 0
    print(
        f"ormsession: error: no live session of user {user_id!r} has the handle {handle!r}",
        file=sys.stderr,
    )
    return 1


def stats(manager: SessionManager, *, sample: int) -> int:
    if sample < 1:
        raise ConfigurationError(f"--sample must be at least 1, not {sample}")
    found = diagnostics_of(manager.repository).stats(manager.policy.now_us(), sample)
    print(f"live sessions: {found.live:,}")
    sizes = found.sizes
    if sizes is None:
        print("data bytes:    - (no sessions measured)")
    else:
        print(
            f"data bytes:    min {sizes.minimum:,}  median {sizes.median:,}  "
            f"p95 {sizes.p95:,}  max {sizes.maximum:,}  ({sizes.how})"
        )
    if found.oldest_created_us is None:
        print("oldest:        - (no live sessions)")
    else:
        created = from_us(found.oldest_created_us)
        age = from_us(manager.policy.now_us()) - created
        print(
            f"oldest:        created {_when(created)}, {_age(age.total_seconds())} ago "
            f"({found.oldest_how})"
        )
    return 0


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def doctor(overrides: dict[str, Any], *, max_skew: float) -> int:
    """One line per check, ``ok`` / ``PROBLEM`` / ``skipped``; exit 1 on any problem."""
    checks = list(_checks(overrides, max_skew))
    for check in checks:
        status = {True: "ok", False: "PROBLEM", None: "skipped"}[check.ok]
        print(f"{status:<8} {check.name:<7} {_one_line(check.detail)}")
    return 1 if any(check.ok is False for check in checks) else 0


def _checks(overrides: dict[str, Any], max_skew: float) -> Any:
    from ormsession.repositories.registry import open_store
    from ormsession.repositories.sql.urls import synchronous_url
    from ormsession.settings import load_config
    from ormsession.urls import redact_url, scheme_of

    try:
        # Never migrate, never refuse an old schema: reporting it is the point.
        config = load_config(auto_migrate=False, schema_check=False, **overrides)
        given = config.url.get_secret_value()
        url = synchronous_url(given)  # as the other commands
        config = config.replace(url=url)
    except OrmsessionError as exc:
        yield Check("url", False, str(exc))
        return
    missing = _missing_sqlite_file(url)
    if missing is not None:
        yield Check("url", True, redact_url(url))
        yield Check("store", False, missing)
        return
    try:
        repository = open_store(url, config, want_async=False)
    except (ConfigurationError, MissingDriverError) as exc:
        yield Check("url", False, str(exc))
        return
    except OrmsessionError as exc:
        yield Check("url", True, redact_url(url))
        yield Check("store", False, str(exc))
        return
    through = "" if url == given else ", read through its synchronous driver"
    yield Check("url", True, f"{redact_url(given)} ({scheme_of(given)}{through})")
    try:
        yield from diagnostics_of(repository).checks(config, now_us(), max_skew)
    finally:
        repository.close()


def _missing_sqlite_file(url: str) -> str | None:
    """Opening a SQLite URL creates the file: doctor reports a missing one instead."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    from ormsession.urls import scheme_of

    if scheme_of(url).split("+", 1)[0] != "sqlite":
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).resolve()
    if path.exists():
        return None
    return f"no SQLite database at {path}; create it with: ormsession db upgrade"


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())
