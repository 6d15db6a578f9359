"""Odd URLs and passwords in odd places (issue 24, defects 8 and 9), sync and async.

A malformed URL is a ConfigurationError at configure(), before any I/O; the options a
driver does accept still work on the real servers; a password given in the query, in a
URL without a scheme, or with an unencoded '/' or '#' shows in no error, repr, settings
dump or CLI output.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.engine import make_url

import ormsession
from ormsession.cli import main
from ormsession.errors import ConfigurationError, OrmsessionError
from ormsession.schema import upgrade
from ormsession.settings import OrmsessionSettings
from tests.properties.offline import no_network, shown_cause
from tests.support.sql_fixtures import async_url, sql_url

SECRET = "Sekr3tPw"
LONG_HOST = "h" * 300
#: (sync URL, async URL): defect 8's list and its relatives, all refused at configure().
MALFORMED = {
    "unclosed IPv6 bracket": ("redis://[::1", "redis://[::1"),
    "MySQL without a database": ("mysql://", "mysql+asyncmy://root@127.0.0.1"),
    "unknown SQLite option": ("sqlite:///x.db?bogus=1", "sqlite+aiosqlite:///x.db?bogus=1"),
    "unknown PostgreSQL option": (
        "postgresql://postgres@127.0.0.1/x?bogus=1",
        "postgresql+asyncpg://postgres@127.0.0.1/x?bogus=1",
    ),
    "unknown MySQL option": (
        "mysql+pymysql://root@127.0.0.1/test?bogus=1",
        "mysql+asyncmy://root@127.0.0.1/test?bogus=1",
    ),
    "unknown Redis option": ("redis://127.0.0.1/0?bogus=1", "redis://127.0.0.1/0?bogus=1"),
    "unknown Couchbase option": ("couchbase://u:p@h/b?bogus=1", "couchbase://u:p@h/b?bogus=1"),
    "unknown MySQL charset": (
        "mysql+pymysql://root@127.0.0.1/test?charset=bogus",
        "mysql+asyncmy://root@127.0.0.1/test?charset=bogus",
    ),
    "MySQL option value": (
        "mysql+pymysql://root@127.0.0.1/test?connect_timeout=soon",
        "mysql+asyncmy://root@127.0.0.1/test?connect_timeout=soon",
    ),
    "NUL in a SQLite path": ("sqlite:///a\x00b.db", "sqlite+aiosqlite:///a\x00b.db"),
    "300-character Redis host": (f"redis://{LONG_HOST}/0", f"redis://{LONG_HOST}/0"),
    "300-character Sentinel host": (
        f"redis+sentinel://{LONG_HOST}/m",
        f"redis+sentinel://{LONG_HOST}/m",
    ),
    "300-character Cluster host": (f"redis+cluster://{LONG_HOST}", f"redis+cluster://{LONG_HOST}"),
    "300-character PostgreSQL host": (
        f"postgresql://u@{LONG_HOST}/db",
        f"postgresql+asyncpg://u@{LONG_HOST}/db",
    ),
    "300-character MySQL host": (
        f"mysql+pymysql://u@{LONG_HOST}/db",
        f"mysql+asyncmy://u@{LONG_HOST}/db",
    ),
    "300-character Couchbase host": (f"couchbase://u:p@{LONG_HOST}/b", f"couchbase://u:p@{LONG_HOST}/b"),
    "63-character label": (f"redis://{'a' * 64}.example/0", f"redis://{'a' * 64}.example/0"),
    "non-ASCII digit port": ("redis://h:²/0", "redis://h:²/0"),
    "non-numeric SQL port": ("postgresql://u@h:x/db", "postgresql+asyncpg://u@h:x/db"),
    "no scheme": ("user@host/db", "user@host/db"),
}  # fmt: skip


def configure_both(sync_url: str, async_url_: str) -> None:
    """configure() then configure_async() must each raise ConfigurationError, offline."""
    with no_network():
        with pytest.raises(ConfigurationError):
            ormsession.configure(url=sync_url, schema_check=False, auto_migrate=False)
        with pytest.raises(ConfigurationError):
            asyncio.run(
                ormsession.configure_async(url=async_url_, schema_check=False, auto_migrate=False)
            )


@pytest.mark.parametrize("label", list(MALFORMED))
def test_malformed_urls_are_configuration_errors_at_configure(label: str) -> None:
    configure_both(*MALFORMED[label])


# -- the options drivers accept still work, on the real servers ------------------------------
#: backend -> (options for its sync driver, options for its asyncio driver).
VALID_OPTIONS = {
    "sqlite": ("timeout=3", "timeout=3"),
    "postgresql": (
        "application_name=ormsession-test&sslmode=disable&connect_timeout=3",
        "ssl=disable&prepared_statement_cache_size=50",
    ),
    "mysql": ("charset=utf8mb4&connect_timeout=3", "charset=utf8mb4&connect_timeout=3"),
}


def with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def round_trip_sync(url: str) -> None:
    with ormsession.configure(url=url, auto_migrate=False) as manager:
        session = manager.open(None)
        session["n"] = 1
        cookie = manager.save(session)
        assert cookie is not None
        assert manager.open(session.id)["n"] == 1


async def round_trip_async(url: str) -> None:
    manager = await ormsession.configure_async(url=url, auto_migrate=False)
    try:
        session = await manager.open(None)
        session["n"] = 1
        assert await manager.save(session) is not None
        assert (await manager.open(session.id))["n"] == 1
    finally:
        await manager.close()


@pytest.mark.parametrize("backend", list(VALID_OPTIONS))
def test_options_the_driver_accepts_still_work(
    request: pytest.FixtureRequest, backend: str
) -> None:
    url = sql_url(request, backend)
    upgrade(url)
    sync_options, async_options = VALID_OPTIONS[backend]
    round_trip_sync(with_query(url, sync_options))
    asyncio.run(round_trip_async(with_query(async_url(url), async_options)))


# -- passwords in odd places ---------------------------------------------------------------
def assert_hidden(*texts: Any) -> None:
    for text in texts:
        assert SECRET not in str(text), text


def assert_error_hidden(error: BaseException) -> None:
    link: BaseException | None = error
    while link is not None:  # every link a traceback would print
        assert_hidden(str(link), repr(link))
        link = shown_cause(link)


@pytest.fixture
def postgresql_db(request: pytest.FixtureRequest) -> str:
    url = sql_url(request, "postgresql")
    upgrade(url)
    return url


def password_forms(url: str) -> dict[str, str]:
    """The real server's URL with a password given in each odd way (trust auth, so any
    password is accepted: these all work)."""
    parsed = make_url(url)
    base = f"{parsed.drivername}://{parsed.username}"
    where = f"{parsed.host}:{parsed.port}/{parsed.database}"
    return {
        "query password": f"{base}@{where}?password={SECRET}",
        "unencoded slash": f"{base}:{SECRET}/x@{where}",
        "unencoded hash": f"{base}:{SECRET}#x@{where}",
    }


@pytest.mark.parametrize("form", ["query password", "unencoded slash", "unencoded hash"])
def test_a_working_url_with_an_odd_password_shows_it_nowhere(postgresql_db: str, form: str) -> None:
    for url in (
        password_forms(postgresql_db)[form],
        password_forms(async_url(postgresql_db))[form],
    ):
        config = OrmsessionSettings(url=url, auto_migrate=False)
        assert config.url.get_secret_value() == url
        assert_hidden(repr(config), str(config.url), config.model_dump(), config.model_dump_json())
        if "asyncpg" in url:
            asyncio.run(round_trip_async(url))
            continue
        round_trip_sync(url)
        with ormsession.configure(config=config) as manager:
            assert_hidden(repr(manager.repository))


@pytest.mark.parametrize(
    ("url", "mode"),
    [
        (f"postgresql+psycopg2://postgres@127.0.0.1:5432/no_such_db?password={SECRET}", "sync"),
        (f"postgresql+asyncpg://postgres@127.0.0.1:5432/no_such_db?password={SECRET}", "async"),
        (f"mysql+pymysql://root@127.0.0.1:3306/test?passwd={SECRET}", "sync"),
        (f"mysql+asyncmy://root@127.0.0.1:3306/test?password={SECRET}", "async"),
        (f"postgresql+psycopg2://postgres:{SECRET}/x@127.0.0.1:5432/no_such_db", "sync"),
        (f"mysql+pymysql://root:{SECRET}#x@127.0.0.1:3306/test", "sync"),
    ],
)
def test_a_refused_login_shows_no_password(url: str, mode: str) -> None:
    # The database does not exist, or root's password is not that one: the server says no.
    def connect() -> Any:
        if mode == "sync":
            return ormsession.configure(url=url, auto_migrate=False, store_timeout=3)
        return asyncio.run(ormsession.configure_async(url=url, auto_migrate=False, store_timeout=3))

    with pytest.raises(OrmsessionError) as caught:
        connect()
    assert_error_hidden(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"user:{SECRET}@host/db",
        f"redis://u:{SECRET}/x@127.0.0.1/0",
        f"redis://u:{SECRET}#x@127.0.0.1/0",
        f"redis+sentinel://127.0.0.1/m?sentinel_password={SECRET}#x&ssl=1",
        f"couchbase://u:{SECRET}/x@127.0.0.1/b",
        f"couchbase://u:{SECRET}#x@127.0.0.1/b",
        f"couchbase://127.0.0.1/b?username=u&password={SECRET}#x",
        f"mysql+pymysql://root@127.0.0.1/test?password={SECRET}&passwd={SECRET}",
        f"postgresql://127.0.0.1?password={SECRET}@",
        f"postgresql://u:{SECRET}@x@127.0.0.1/db",
    ],
)
def test_refused_urls_show_no_password(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with no_network():
        try:
            manager = ormsession.configure(url=url, schema_check=False, auto_migrate=False)
        except OrmsessionError as exc:
            assert_error_hidden(exc)
        else:
            assert_hidden(repr(manager.repository))
            manager.close()
    monkeypatch.setenv("ORMSESSION_URL", url)
    settings = OrmsessionSettings()
    assert settings.url.get_secret_value() == url
    assert_hidden(repr(settings), settings.model_dump(), settings.model_dump_json())


def test_the_cli_shows_no_password(postgresql_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    bad = f"postgresql+psycopg2://postgres@127.0.0.1:5432/no_such_db?password={SECRET}"
    for command in (["count"], ["gc", "--quiet"], ["db", "current"], ["db", "upgrade"]):
        assert main([*command, "--url", bad]) == 1
        captured = capsys.readouterr()
        assert "error" in captured.err
        assert_hidden(captured.out, captured.err)
    good = password_forms(postgresql_db)["query password"]
    assert main(["db", "upgrade", "--url", good]) == 0
    assert main(["count", "--url", good]) == 0
    captured = capsys.readouterr()
    assert_hidden(captured.out, captured.err)
