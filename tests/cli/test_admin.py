"""The admin commands on the real stores: sessions list/revoke, stats, doctor."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ormsession import configure, schema
from ormsession.cli import main
from ormsession.manager import SessionManager
from ormsession.session import RequestSession
from tests.cli.test_cli import insert_sessions
from tests.support.redis_fixtures import SENTINEL_DATA_PASSWORD, SENTINEL_PASSWORD
from tests.support.stores import STORE_TARGETS

STORES = ["sqlite", "postgresql", "mysql", "redis"]
SQL_STORES = ["sqlite", "postgresql", "mysql"]


@pytest.fixture
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict]:
    """(url, options) of one store, emptied for this test; the CLI sees the same options
    (a Redis key prefix) through the environment, as an operator's shell would."""
    target = STORE_TARGETS[request.param](request)
    for name, value in target.options.items():
        if name != "auto_migrate":
            monkeypatch.setenv(f"ORMSESSION_{name.upper()}", str(value))
    return target.url, target.options


@pytest.fixture
def manager(store: tuple[str, dict]) -> Iterator[SessionManager]:
    url, options = store
    with configure(url=url, **options) as manager:
        yield manager


def logged_in(manager: SessionManager, user: str, agent: str, ip: str) -> RequestSession:
    session = manager.open(None)
    session["n"] = 1
    manager.login(session, user, user_agent=agent, ip=ip)
    manager.save(session)
    return session


def cli(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    status = main(list(arguments))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("store", STORES, indirect=True)
def test_sessions_list_and_revoke(
    store: tuple[str, dict], manager: SessionManager, capsys: pytest.CaptureFixture[str]
) -> None:
    url = store[0]
    firefox = logged_in(manager, "ada", "Firefox/140", "192.0.2.7")
    phone = logged_in(manager, "ada", "Mobile Safari", "2001:db8::1")
    logged_in(manager, "bob", "curl/8", "192.0.2.9")

    status, out, _ = cli(capsys, "sessions", "list", "--user", "ada", "--url", url)
    assert status == 0
    header, *rows = out.splitlines()
    assert header.split() == ["handle", "created", "last", "seen", "expires", "user", "agent", "ip"]
    assert len(rows) == 2
    assert {firefox.handle, phone.handle} == {row.split()[0] for row in rows}
    assert "Firefox/140" in out and "2001:db8::1" in out and "curl" not in out
    for session in (firefox, phone):  # never an id or a storage key
        assert session.id not in out and session.storage_key not in out

    assert firefox.handle is not None
    status, out, _ = cli(
        # --handle=H: a handle may start with "-", which argparse reads as an option.
        capsys,
        "sessions",
        "revoke",
        "--user",
        "ada",
        f"--handle={firefox.handle}",
        "--url",
        url,
    )
    assert (status, out.strip()) == (0, f"revoked session {firefox.handle} of user 'ada'")
    assert manager.open(firefox.id).id != firefox.id  # signed out
    status, _, err = cli(
        capsys, "sessions", "revoke", "--user", "bob", f"--handle={phone.handle}", "--url", url
    )
    assert status == 1 and "no live session of user 'bob'" in err  # another user's handle
    status, out, _ = cli(capsys, "sessions", "revoke", "--user", "ada", "--all", "--url", url)
    assert (status, out.strip()) == (0, "revoked 1 session of user 'ada'")
    status, out, err = cli(capsys, "sessions", "list", "--user", "ada", "--url", url)
    assert (status, out, err.strip()) == (0, "", "no live sessions of user 'ada'")
    assert len(manager.sessions_of("bob")) == 1


def test_revoke_needs_a_handle_or_all(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["sessions", "revoke", "--user", "ada"])
    assert exit_.value.code == 2
    assert "one of the arguments --handle --all is required" in capsys.readouterr().err


@pytest.mark.parametrize("store", SQL_STORES, indirect=True)
def test_stats_on_sql_measures_every_live_session_or_a_sample(
    store: tuple[str, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    url = store[0]
    insert_sessions(url, expired=3, live=5)  # data b"{}" (2 bytes), created 3 days ago
    status, out, _ = cli(capsys, "stats", "--url", url)
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "live sessions: 5"
    assert lines[1] == "data bytes:    min 2  median 2  p95 2  max 2  (every live session)"
    assert lines[2].startswith("oldest:        created ") and "3.0 d ago" in lines[2]
    status, out, _ = cli(capsys, "stats", "--url", url, "--sample", "2")
    assert "(a random sample of 2 live sessions, by key)" in out
    status, out, _ = cli(capsys, "stats", "--url", url, "--sample", "1")
    assert "(a random sample of 1 live session, by key)" in out


@pytest.mark.parametrize("store", ["redis", "cluster", "sentinel"], indirect=True)
def test_stats_on_redis_samples_by_scan(
    store: tuple[str, dict], manager: SessionManager, capsys: pytest.CaptureFixture[str]
) -> None:
    for size in (10, 20, 30):
        session = manager.open(None)
        session["x"] = "a" * size
        manager.save(session)
    status, out, _ = cli(capsys, "stats", "--url", store[0])
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "live sessions: 3"
    assert "(a SCAN sample of 3 sessions)" in lines[1]
    assert lines[2].endswith("(exact: every session sampled)")


def test_stats_on_an_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    schema.upgrade(url)
    status, out, _ = cli(capsys, "stats", "--url", url)
    assert (status, out.splitlines()[1:]) == (
        0,
        ["data bytes:    - (no sessions measured)", "oldest:        - (no live sessions)"],
    )


# -- doctor -------------------------------------------------------------------------------------
def doctor(capsys: pytest.CaptureFixture[str], url: str) -> tuple[int, dict[str, str]]:
    status, out, _ = cli(capsys, "doctor", "--url", url)
    lines = {}
    for line in out.splitlines():
        verdict, name, _detail = line.split(None, 2)
        lines[name] = verdict
    for secret in (SENTINEL_DATA_PASSWORD, SENTINEL_PASSWORD, "s3cret"):
        assert secret not in out
    return status, lines | {"_out": out}


@pytest.mark.parametrize("fresh_database_url", SQL_STORES, indirect=True)
def test_doctor_finds_a_missing_table_a_schema_behind_head_and_then_none(
    fresh_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = fresh_database_url
    if url.startswith("sqlite"):
        sqlite3.connect(url.removeprefix("sqlite:///")).close()  # the file, no table
    status, lines = doctor(capsys, url)
    assert status == 1
    assert (lines["url"], lines["store"], lines["schema"]) == ("ok", "ok", "PROBLEM")
    assert "the session table 'session' is missing" in lines["_out"]
    assert "run: ormsession db upgrade" in lines["_out"]

    schema.upgrade(url, "0002_session_moved_to")
    status, lines = doctor(capsys, url)
    assert (status, lines["schema"]) == (1, "PROBLEM")
    assert "at revision 0002_session_moved_to, this ormsession needs 0003" in lines["_out"]

    schema.upgrade(url)
    status, lines = doctor(capsys, url)
    assert (status, lines["schema"]) == (0, "ok")
    expected_clock = "skipped" if url.startswith("sqlite") else "ok"
    assert lines["clock"] == expected_clock


def test_doctor_reports_a_missing_sqlite_file_without_creating_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nothing.sqlite3"
    status, lines = doctor(capsys, f"sqlite:///{path}")
    assert (status, lines["store"]) == (1, "PROBLEM") and not path.exists()


def test_doctor_reports_an_unreachable_store_and_a_bad_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, lines = doctor(capsys, "postgresql+psycopg2://app:s3cret@127.0.0.1:1/x")
    assert (status, lines["url"], lines["store"]) == (1, "ok", "PROBLEM")
    assert "s3cret" not in lines["_out"]
    status, lines = doctor(capsys, "bogus://x")
    assert (status, lines["url"]) == (1, "PROBLEM")


@pytest.mark.parametrize("store", ["redis", "cluster", "sentinel"], indirect=True)
def test_doctor_finds_a_redis_key_without_ttl(
    store: tuple[str, dict], manager: SessionManager, capsys: pytest.CaptureFixture[str]
) -> None:
    url, options = store
    prefix = options["key_prefix"]
    session = manager.open(None)
    session["a"] = 1
    manager.save(session)
    logged_in(manager, "ada", "Firefox", "192.0.2.7")
    status, lines = doctor(capsys, url)
    assert status == 0, lines["_out"]
    assert (lines["store"], lines["clock"], lines["ttl"]) == ("ok", "ok", "ok")

    client: Any = manager.repository.client  # type: ignore[attr-defined]
    client.persist(f"{prefix}{{{session.storage_key[:2]}}}:{session.storage_key}")
    status, lines = doctor(capsys, url)
    assert (status, lines["ttl"]) == (1, "PROBLEM")
    assert "1 of " in lines["_out"] and "(1 session)" in lines["_out"]
    assert session.storage_key not in lines["_out"] and session.id not in lines["_out"]


def test_doctor_and_stats_on_a_store_without_diagnostics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The memory store has no diagnostics(): a probe read, the count, a skipped clock."""
    status, lines = doctor(capsys, "memory://")
    assert (status, lines["store"], lines["clock"]) == (0, "ok", "skipped")
    status, out, _ = cli(capsys, "stats", "--url", "memory://")
    assert (status, out.splitlines()[0]) == (0, "live sessions: 0")


def test_a_handle_that_starts_with_a_dash_is_revoked_with_the_equals_form(
    capsys: pytest.CaptureFixture[str],
) -> None:
    arguments = ["sessions", "revoke", "--user", "a", "--handle=-abc", "--url", "memory://"]
    status, _, err = cli(capsys, *arguments)
    assert status == 1 and "has the handle '-abc'" in err
