"""The ``ormsession`` command: gc, count, db, and its errors."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert

from ormsession.cli import _Progress, main
from ormsession.repositories.sql.model import session_table
from tests.support.sql_fixtures import SQL_BACKENDS, async_url, sql_url
from tests.support.stores import STORE_TARGETS


def insert_sessions(url: str, *, expired: int, live: int) -> None:
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "session_key": f"{n:064x}",
            "session_data": b"{}",
            "session_version": 1,
            "session_created": now - dt.timedelta(days=3),
            "session_expiry": now + (dt.timedelta(days=1) if n < live else -dt.timedelta(hours=1)),
        }
        for n in range(expired + live)
    ]
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(insert(session_table()), rows)
    engine.dispose()


@pytest.fixture(params=SQL_BACKENDS)
def url(request: pytest.FixtureRequest) -> str:
    """An SQL store's URL, migrated and its session table emptied for this test."""
    STORE_TARGETS[request.param](request)
    return sql_url(request, request.param)


def test_gc_deletes_expired_sessions_in_batches_and_count_counts_live_ones(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    insert_sessions(url, expired=2500, live=7)
    assert main(["count", "--url", url]) == 0
    assert capsys.readouterr().out.strip() == "7"
    assert main(["gc", "--url", url, "--batch-size", "1000"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "2500"
    assert "deleted 2,500 expired sessions" in captured.err
    assert main(["gc", "--url", url]) == 0
    assert capsys.readouterr().out.strip() == "0"
    assert main(["count", "--url", url]) == 0
    assert capsys.readouterr().out.strip() == "7"


def test_an_asyncio_apps_url_is_read_through_the_synchronous_driver(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A FastAPI app's ORMSESSION_URL names asyncpg (asyncmy, aiosqlite): cron's
    # `ormsession gc` on its nodes failed with "use ormsession.configure_async()".
    insert_sessions(url, expired=3, live=2)
    monkeypatch.setenv("ORMSESSION_URL", async_url(url))
    assert main(["count"]) == 0
    assert capsys.readouterr().out.strip() == "2"
    assert main(["gc", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == "3"
    assert main(["stats"]) == 0
    assert "live sessions: 2" in capsys.readouterr().out
    assert main(["sessions", "list", "--user", "nobody"]) == 0
    assert main(["doctor"]) == 0
    shown = capsys.readouterr().out
    assert "read through its synchronous driver" in shown and "PROBLEM" not in shown


def test_gc_with_a_batch_time_budget_deletes_in_smaller_statements(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    insert_sessions(url, expired=30, live=2)
    # No statement meets a nanosecond: after the first batch of 20, one row at a time.
    arguments = ["gc", "--url", url, "--batch-size", "20", "--batch-seconds", "1e-9", "--quiet"]
    assert main(arguments) == 0
    assert capsys.readouterr().out.strip() == "30"
    assert main(["count", "--url", url]) == 0
    assert capsys.readouterr().out.strip() == "2"


@pytest.mark.parametrize(
    ("option", "message"),
    [("--batch-size=0", "batch size must be"), ("--batch-seconds=-1", "batch seconds must be")],
)
def test_gc_refuses_a_batch_it_cannot_run(
    tmp_path: Path, option: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.sqlite3'}"
    assert main(["db", "upgrade", "--url", url]) == 0
    assert main(["gc", "--url", url, option]) == 1
    assert message in capsys.readouterr().err


def test_the_progress_bar() -> None:
    stream = io.StringIO()
    progress = _Progress(stream, expected=4000)
    assert progress.line(1000).startswith("[########----------------------]  25% 1,000/4,000")
    assert _Progress(stream, expected=None).line(5).startswith("deleted 5 expired sessions")


def test_errors_exit_1_with_a_message_and_no_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["count", "--url", "postgresql+psycopg2://u:topsecret@127.0.0.1:1/x"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("ormsession: error:") and "topsecret" not in error
    assert main(["gc", "--url", "bogus://x"]) == 1
    assert "scheme must be one of" in capsys.readouterr().err


def test_the_installed_command_runs() -> None:
    done = subprocess.run(
        ["ormsession", "--help"],
        capture_output=True,
        text=True,
        env=os.environ | {"PATH": os.path.dirname(sys.executable)},
    )
    assert done.returncode == 0 and "db" in done.stdout and "gc" in done.stdout
