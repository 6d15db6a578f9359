"""The ``ormsession`` command as a new user meets it: fix hints that can be run as printed,
no stray files, one-line errors, confirmation before dropping data."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

import ormsession
from ormsession import schema
from ormsession.cli import main
from tests.cli.test_cli import insert_sessions
from tests.support.sql_fixtures import MARIADB_ADMIN_URL, POSTGRES_ADMIN_URL

BACKENDS = ["sqlite", "postgresql", "mysql"]


@pytest.fixture(autouse=True)
def _in_an_empty_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command runs where a stray ``ormsession.sqlite3`` would be seen, without the
    caller's ORMSESSION_* settings."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.upper().startswith("ORMSESSION_")]:
        if name.upper() != "ORMSESSION_REQUIRE_BACKENDS":
            monkeypatch.delenv(name)


def with_password(url: str, password: str) -> str:
    return make_url(url).set(password=password).render_as_string(hide_password=False)


def has_table(url: str) -> bool:
    engine = create_engine(url, poolclass=NullPool)
    try:
        return inspect(engine).has_table("session")
    finally:
        engine.dispose()


# -- the fix hint ---------------------------------------------------------------------------


@pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)
def test_the_fix_hint_is_the_full_command_with_a_password_placeholder(
    fresh_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # PostgreSQL here trusts every local connection: its URL may carry a password, which
    # must never be printed. (MariaDB's root has none: one given would be refused.)
    url = fresh_database_url
    if url.startswith("postgresql"):
        url = with_password(url, "topsecret")
    if url.startswith("sqlite"):
        Path(make_url(url).database or "").touch()  # there, without the table
    assert main(["count", "--url", url]) == 1
    error = capsys.readouterr().err
    assert "topsecret" not in error
    shown = shlex.quote(url.replace("topsecret", "<password>"))
    assert error.rstrip().endswith(f"run: ormsession db upgrade --url {shown}"), error
    assert main(["db", "current", "--url", url]) == 0
    assert f"(none: run ormsession db upgrade --url {shown})" in capsys.readouterr().out


def test_the_fix_hint_names_the_environment_variable_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "app.sqlite3"
    database.touch()  # exists, without the table
    monkeypatch.setenv("ORMSESSION_URL", f"sqlite:///{database}")
    assert main(["count"]) == 1
    assert (
        capsys.readouterr()
        .err.rstrip()
        .endswith('run: ormsession db upgrade --url "$ORMSESSION_URL"')
    )


def test_the_printed_command_fixes_the_store_it_was_printed_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite3'}"
    (tmp_path / "elsewhere.sqlite3").touch()
    assert main(["gc", "--url", url]) == 1
    command = shlex.split(capsys.readouterr().err.rsplit("run: ", 1)[1])
    assert command[:3] == ["ormsession", "db", "upgrade"]
    assert main(command[1:]) == 0
    assert main(["count", "--url", url]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0"
    assert not Path("ormsession.sqlite3").exists(), "the default store was migrated instead"


# -- no stray SQLite file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [["count"], ["gc"], ["db", "current"], ["db", "downgrade", "--yes"]],
)
def test_commands_that_only_read_leave_no_sqlite_file_behind(
    tmp_path: Path, arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(arguments) == 1
    error = capsys.readouterr().err
    assert f"no SQLite database at {tmp_path / 'ormsession.sqlite3'}" in error
    assert error.rstrip().endswith("Create it with: ormsession db upgrade")
    named = tmp_path / "named.sqlite3"
    assert main([*arguments, "--url", f"sqlite:///{named}"]) == 1
    assert list(tmp_path.iterdir()) == []


# -- Alembic's errors -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["upgrade", "downgrade"])
def test_an_unknown_revision_is_one_error_line(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    assert main(["db", "upgrade", "--url", url]) == 0
    capsys.readouterr()
    confirmed = ["--yes"] if command == "downgrade" else []
    assert main(["db", command, "--url", url, "--revision", "nosuch", *confirmed]) == 1
    captured = capsys.readouterr()
    assert captured.err == "ormsession: error: Can't locate revision identified by 'nosuch'\n"
    assert main(["db", "upgrade", "--url", url, "--revision", "nosuch", "--sql"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_an_unknown_revision_from_the_installed_command_has_no_traceback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    done = subprocess.run(
        [sys.executable, "-m", "ormsession", "db", "upgrade", "--url", url, "--revision", "nosuch"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(ormsession.__file__).parents[1])},
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "ormsession: error: Can't locate revision identified by 'nosuch'"
    ]


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    command = [sys.executable, "-m", "ormsession", "db", "upgrade", "--url", url, "--sql"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(ormsession.__file__).parents[1])}
    # `... --sql | head -1`: the pipe is closed after the first line, before the DDL ends.
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.read(1)
        process.stdout.close()
        error = process.stderr.read().decode()
    assert "Traceback" not in error and "BrokenPipeError" not in error, error
    assert process.returncode == 1


# -- gc ---------------------------------------------------------------------------------------


def test_batch_seconds_none_turns_the_time_budget_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    assert main(["db", "upgrade", "--url", url]) == 0
    insert_sessions(url, expired=30, live=2)
    capsys.readouterr()
    assert main(["gc", "--url", url, "--batch-seconds", "none", "--batch-size", "10"]) == 0
    assert capsys.readouterr().out.strip() == "30"
    assert main(["gc", "--url", url, "--batch-seconds", "None"]) == 0
    with pytest.raises(SystemExit):
        main(["gc", "--url", url, "--batch-seconds", "soon"])
    assert "not a number of seconds or none" in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_gc_on_a_terminal_prints_its_total_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    assert main(["db", "upgrade", "--url", url]) == 0
    insert_sessions(url, expired=1234, live=1)
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    monkeypatch.setattr(sys, "stderr", screen)
    assert main(["gc", "--url", url]) == 0
    lines = screen.getvalue().split("\n")
    assert lines[-2].startswith("deleted 1,234 expired sessions in "), lines
    assert "1234" not in lines and "1,234" not in lines, "the total, a second time"
    # Piped (a script reading stdout), the bare number is still printed.
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stdout", piped)
    other = f"sqlite:///{tmp_path / 'other.sqlite3'}"
    schema.upgrade(other)
    insert_sessions(other, expired=3, live=0)
    assert main(["gc", "--url", other]) == 0
    assert piped.getvalue() == "3\n"


# -- a refused login --------------------------------------------------------------------------


@pytest.fixture
def mariadb_account() -> Iterator[tuple[str, str]]:
    """A MariaDB account with a password (name, password), dropped afterwards."""
    name, password = f"orms_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    admin = create_engine(MARIADB_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    hosts = ("localhost", "127.0.0.1")
    with admin.connect() as connection:
        for host in hosts:
            connection.execute(text(f"CREATE USER '{name}'@'{host}' IDENTIFIED BY '{password}'"))
            connection.execute(text(f"GRANT ALL ON test.* TO '{name}'@'{host}'"))
    try:
        yield name, password
    finally:
        with admin.connect() as connection:
            for host in hosts:
                connection.execute(text(f"DROP USER IF EXISTS '{name}'@'{host}'"))
        admin.dispose()


def test_a_wrong_mariadb_password_is_reported_as_a_refused_login(
    mariadb_account: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    name, password = mariadb_account
    right = f"mysql+pymysql://{name}:{password}@127.0.0.1:3306/test"
    engine = create_engine(right, poolclass=NullPool)
    with engine.connect() as connection:  # the account works with its own password
        assert connection.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()
    assert main(["count", "--url", right.replace(password, "wrong-pw-1")]) == 1
    error = capsys.readouterr().err
    assert "refused the login" in error and "authentication failed" in error
    assert "unavailable" not in error and "wrong-pw-1" not in error


@pytest.fixture
def postgres_role_without_login() -> Iterator[str]:
    """A PostgreSQL role that may not log in, dropped afterwards. This server trusts every
    local connection (pg_hba: trust), so a wrong password cannot be refused here; a role
    refused at login is the same SQLSTATE class (28, invalid authorization)."""
    name = f"orms_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.execute(text(f"CREATE ROLE {name} NOLOGIN PASSWORD 'right-pw'"))
    try:
        yield name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP ROLE IF EXISTS {name}"))
        admin.dispose()


def test_a_postgresql_login_refusal_is_reported_as_such(
    postgres_role_without_login: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql+psycopg2://{postgres_role_without_login}:wrong-pw-2@127.0.0.1:5432/test"
    assert main(["count", "--url", url]) == 1
    error = capsys.readouterr().err
    assert "refused the login" in error and "unavailable" not in error
    assert "wrong-pw-2" not in error


def test_a_refused_login_on_the_asyncio_side_too(postgres_role_without_login: str) -> None:
    import asyncio

    url = f"postgresql+asyncpg://{postgres_role_without_login}:wrong-pw-3@127.0.0.1:5432/test"
    with pytest.raises(ormsession.StoreUnavailableError, match="refused the login") as caught:
        asyncio.run(ormsession.configure_async(url=url))
    assert "wrong-pw-3" not in str(caught.value)


@pytest.mark.usefixtures("redis_binaries")
def test_a_wrong_redis_password_is_reported_as_a_refused_login(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.support.redis_servers import RedisProcess

    with RedisProcess(password="right-pw") as server:
        host, port = server.address
        assert main(["count", "--url", f"redis://:right-pw@{host}:{port}/0"]) == 0
        capsys.readouterr()
        assert main(["count", "--url", f"redis://:wrong-pw-4@{host}:{port}/0"]) == 1
    error = capsys.readouterr().err
    assert "refused the login" in error and "unavailable" not in error
    assert "wrong-pw-4" not in error


# -- help, version -----------------------------------------------------------------------------


def test_help_has_no_restructuredtext_and_version_is_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for arguments in (["--help"], ["gc", "--help"], ["db", "downgrade", "--help"]):
        with pytest.raises(SystemExit):
            main(arguments)
        shown = capsys.readouterr().out
        assert "``" not in shown and ":func:" not in shown
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"ormsession {ormsession.__version__}\n"


# -- db downgrade asks first ------------------------------------------------------------------


@pytest.fixture
def migrated(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    schema.upgrade(url)
    return url


def test_downgrade_without_a_terminal_needs_yes(
    migrated: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # piped: never read as an answer
    assert main(["db", "downgrade", "--url", migrated]) == 1
    assert "pass --yes" in capsys.readouterr().err
    assert has_table(migrated)
    assert main(["db", "downgrade", "--url", migrated, "--yes"]) == 0
    assert not has_table(migrated)


class Keyboard(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "dropped"), [("y\n", True), ("\n", False), ("no\n", False)])
def test_downgrade_on_a_terminal_asks(
    migrated: str,
    answer: str,
    dropped: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", Keyboard(answer))
    assert main(["db", "downgrade", "--url", migrated]) == (0 if dropped else 1)
    shown = capsys.readouterr()
    assert "drops the session table" in shown.err and "[y/N]" in shown.out
    assert has_table(migrated) is not dropped
