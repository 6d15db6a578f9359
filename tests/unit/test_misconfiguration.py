"""No silent misconfiguration: misspelt settings, where the sessions go, values and URLs
whose errors say what to write instead."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine

import ormsession
from ormsession.config import Config
from ormsession.errors import ConfigurationError
from ormsession.settings import NOT_SETTINGS, OrmsessionSettings


@pytest.fixture(autouse=True)
def _clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ORMSESSION_* from the caller, no .env from the checkout."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.upper().startswith("ORMSESSION_")]:
        if name.upper() not in NOT_SETTINGS:
            monkeypatch.delenv(name)


# -- misspelt settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("ORMSESSION_URLL", "ORMSESSION_URL"),
        ("ORMSESSION_IDLE_TIMOUT", "ORMSESSION_IDLE_TIMEOUT"),
        ("ormsession_cookie_nam", "ORMSESSION_COOKIE_NAME"),
    ],
)
def test_an_unknown_variable_is_an_error_naming_the_closest_setting(
    name: str, closest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, "redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigurationError, match=f"did you mean {closest}") as caught:
        ormsession.configure()
    assert name.upper() in str(caught.value) and "environment" in str(caught.value)
    assert "redis://" not in str(caught.value), "the value is never echoed"
    assert not Path("ormsession.sqlite3").exists(), "nothing fell back to the default store"


def test_unknown_keys_in_dotenv_are_errors_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "ORMSESSION_URL=memory://\nORMSESSION_IDLE_TIMOUT=2h\nORMSESSION_NOTHING_LIKE_IT=1\n"
        "OTHER_APP_SETTING=1\n"
    )
    with pytest.raises(ConfigurationError) as caught:
        ormsession.configure()
    message = str(caught.value)
    assert message.startswith("in .env:")
    assert "ORMSESSION_IDLE_TIMOUT is not an ormsession setting (did you mean " in message
    assert "ORMSESSION_IDLE_TIMEOUT?" in message
    assert "ORMSESSION_NOTHING_LIKE_IT is not an ormsession setting (no option" in message
    assert "OTHER_APP_SETTING" not in message


def test_a_renamed_setting_in_dotenv_names_its_new_name(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ORMSESSION_URL=memory://\nORMSESSION_CONNECT_TIMEOUT=2\n")
    with pytest.raises(ConfigurationError, match="is now ORMSESSION_STORE_TIMEOUT"):
        ormsession.configure()


def test_the_tooling_variables_are_not_settings_and_not_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in NOT_SETTINGS:
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("ORMSESSION_URL", "memory://")
    with ormsession.configure() as manager:
        assert manager.config.url.get_secret_value() == "memory://"
    assert {"ORMSESSION_REQUIRE_BACKENDS", "ORMSESSION_COUCHBASE_URL"} <= NOT_SETTINGS


def test_the_settings_class_itself_refuses_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORMSESSION_TABLE_NAMES", "x")
    with pytest.raises(ConfigurationError, match="ORMSESSION_TABLE_NAME"):
        OrmsessionSettings()


# -- where the sessions go --------------------------------------------------------------------


def announced(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "sessions go to" in r.getMessage()]


def test_the_default_sqlite_file_is_announced_with_its_absolute_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ormsession"):
        ormsession.configure().close()
    (record,) = announced(caplog)
    assert record.levelno == logging.WARNING, "nobody chose this store: say so loudly"
    assert f"the SQLite file {tmp_path / 'ormsession.sqlite3'}" in record.getMessage()
    assert "ORMSESSION_URL" in record.getMessage()


def test_a_chosen_relative_sqlite_file_is_announced_absolute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ormsession"):
        ormsession.configure("sqlite:///s.db").close()
        ormsession.configure(config=Config(url="sqlite:///t.db").replace(cookie_name="x")).close()
    first, second = announced(caplog)
    assert first.levelno == second.levelno == logging.INFO
    assert f"the SQLite file {tmp_path / 's.db'}, table 'session'" in first.getMessage()
    assert f"the SQLite file {tmp_path / 't.db'}" in second.getMessage()


def test_the_announcement_never_shows_a_password(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy.engine import make_url

    from tests.support.stores import STORE_TARGETS

    STORE_TARGETS["postgresql"](request)
    url = make_url(request.getfixturevalue("postgresql_url")).set(password="hunter2-pw")
    with caplog.at_level(logging.INFO, logger="ormsession"):
        ormsession.configure(url.render_as_string(hide_password=False)).close()
    (record,) = announced(caplog)
    assert "hunter2-pw" not in record.getMessage() and ":***@127.0.0.1" in record.getMessage()
    assert f"/{url.database}, table 'session'" in record.getMessage()


def test_engines_clients_and_the_asyncio_side_are_announced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, redis_url: str
) -> None:
    import redis

    from ormsession import schema

    schema.upgrade(f"sqlite:///{tmp_path / 'app.db'}")
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    client = redis.Redis.from_url(redis_url)

    async def asyncio_side() -> None:
        manager = await ormsession.configure_async("memory://")
        await manager.close()

    with caplog.at_level(logging.INFO, logger="ormsession"):
        ormsession.configure(engine=engine).close()
        ormsession.configure(client=client, key_prefix="t:").close()
        asyncio.run(asyncio_side())
    engine.dispose()
    client.close()
    messages = [record.getMessage() for record in announced(caplog)]
    assert messages[0].endswith(
        f"the app's engine sqlite:///{tmp_path / 'app.db'}, table 'session'"
    )
    assert messages[1].endswith("the app's redis Redis client, key prefix 't:'")
    assert "this process's memory" in messages[2]


# -- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["idle_timeout", "absolute_timeout", "cookie_lifetime"])
def test_a_bad_duration_lists_the_accepted_forms(option: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Config(**{option: "forever"})
    message = str(caught.value)
    assert f"{option}: not a duration" in message
    for form in ("3600", "90s", "30m", "12h", "14d", "2w", "01:30:00", "PT1H"):
        assert form in message
    assert ("0 or none turns it off" in message) is (option != "idle_timeout")


@pytest.mark.parametrize("written", ["MSGPACK", "Msgpack", " msgpack "])
def test_a_serializer_name_is_read_whatever_its_case(
    written: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORMSESSION_SERIALIZER", written)
    with ormsession.configure(url="memory://") as manager:
        assert manager.config.serializer == "msgpack"


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("ORMSESSION_SERIALIZER", "serializer: must be json or msgpack"),
        ("ORMSESSION_METRICS", "metrics: must be opentelemetry or none"),
    ],
)
def test_a_named_choice_from_the_environment_lists_the_names_not_pydantics_union(
    variable: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not "serializer.is-instance[Serializer]: Input should be an instance of Serializer".
    monkeypatch.setenv(variable, "pickle")
    with pytest.raises(ConfigurationError) as caught:
        ormsession.configure(url="memory://")
    assert str(caught.value) == f"invalid ormsession settings: {expected} " + (
        "(in code, also a Serializer object)"
        if "serializer" in expected
        else "(in code, also a callable taking a MetricEvent)"
    )


@pytest.mark.parametrize(
    ("spelling", "value"), [("Lax", "lax"), ("STRICT", "strict"), (" None", "none")]
)
def test_samesite_in_any_case(spelling: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Config(cookie_samesite=spelling, cookie_secure=True).cookie_samesite == value
    monkeypatch.setenv("ORMSESSION_COOKIE_SAMESITE", spelling)
    monkeypatch.setenv("ORMSESSION_COOKIE_SECURE", "true")
    assert OrmsessionSettings().cookie.samesite == value
    with pytest.raises(ConfigurationError, match="cookie_samesite"):
        Config(cookie_samesite="relaxed")


def test_durations_still_parse() -> None:
    assert Config(idle_timeout="90m").idle_timeout == dt.timedelta(minutes=90)


# -- URLs ----------------------------------------------------------------------------------


def test_postgres_scheme_is_explained_and_never_offered() -> None:
    with pytest.raises(ConfigurationError) as caught:
        ormsession.configure(url="postgres://app:pw-1@db.internal/app")
    message = str(caught.value)
    assert "write postgresql://app:***@db.internal/app" in message and "pw-1" not in message
    with pytest.raises(ConfigurationError, match="scheme must be one of") as unknown:
        ormsession.configure(url="nosuch://x")
    offered = str(unknown.value).rsplit("one of ", 1)[1].split(", ")
    assert "postgresql" in offered and "postgres" not in offered


@pytest.mark.parametrize("url", ["sqlite:/x.db", "sqlite:x.db", "SQLite:/x.db"])
def test_a_sqlite_url_without_its_slashes_says_what_one_looks_like(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ormsession.configure(url=url)
    message = str(caught.value)
    assert "is not a SQLite URL" in message and "scheme must be one of" not in message
    assert "sqlite:///relative/path.db" in message and "sqlite:////absolute/path.db" in message
    assert not Path("x.db").exists()


@pytest.mark.parametrize("scheme", ["SQLite", "SQLITE+PYSQLITE"])
def test_a_sql_scheme_in_capitals_is_the_same_scheme(scheme: str) -> None:
    # As REDIS:// is: it was "unsupported SQL database 'SQLite' ... supports ... sqlite".
    with ormsession.configure(url=f"{scheme}:///caps.sqlite3") as manager:
        assert manager.count() == 0
    assert Path("caps.sqlite3").exists()


@pytest.mark.parametrize("url", ["sqlite://x.db", "sqlite://x.db/y"])
def test_a_sqlite_url_with_two_slashes_says_what_one_looks_like(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ormsession.configure(url=url)
    assert "sqlite:///relative/path.db" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "offered"),
    [
        ("postgresql+psycopg3://app:pw-7@127.0.0.1/app", "postgresql+psycopg,"),
        ("mysql+pymsql://app:pw-7@127.0.0.1/app", "mysql+pymysql,"),
        ("sqlite+pysqlit:///x.db", "sqlite+pysqlite,"),
    ],
)
def test_a_misspelt_sql_driver_is_named_as_such_not_as_a_missing_package(
    url: str, offered: str
) -> None:
    # SQLAlchemy has no such dialect: installing the extra the message used to name (already
    # installed) could not help.
    for configure in (
        lambda: ormsession.configure(url=url),
        lambda: asyncio.run(ormsession.configure_async(url=url)),
    ):
        with pytest.raises(ConfigurationError) as caught:
            configure()
        message = str(caught.value)
        assert not isinstance(caught.value, ormsession.MissingDriverError), message
        assert "names no SQLAlchemy driver" in message and offered in message
        assert "pw-7" not in message and not Path("x.db").exists()


def test_a_misspelt_sql_driver_is_one_error_line_from_the_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ormsession.cli import main

    url = "postgresql+psycopg3://app:pw-7@127.0.0.1/app"
    assert main(["db", "upgrade", "--url", url]) == 1
    error = capsys.readouterr().err
    assert error.startswith("ormsession: error:") and "names no SQLAlchemy driver" in error
    assert "pw-7" not in error


@pytest.mark.parametrize(
    ("url", "directory", "problem"),
    [
        ("sqlite:///missing/sessions.db", "missing", "does not exist"),
        ("sqlite:///a/b/sessions.db", "a/b", "does not exist"),
        ("sqlite:///plain-file/sessions.db", "plain-file", "is not a directory"),
    ],
)
def test_a_sqlite_file_whose_directory_is_not_there_is_a_configuration_error(
    tmp_path: Path, url: str, directory: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # SQLite creates the file, not its directory; its "unable to open database file" at
    # the first statement read as an outage (StoreUnavailableError).
    from ormsession.cli import main

    (tmp_path / "plain-file").write_text("")
    absolute = url.replace("sqlite:///", f"sqlite:///{tmp_path}/")
    for where in (url, absolute):
        with pytest.raises(ConfigurationError, match=f"{directory}'.*which {problem}") as error:
            ormsession.configure(url=where)
        relative = "relative to the working directory"
        assert (relative in str(error.value)) == (where == url)
        with pytest.raises(ConfigurationError, match=f"{directory}'.*which {problem}"):
            asyncio.run(
                ormsession.configure_async(url=where.replace("sqlite:", "sqlite+aiosqlite:", 1))
            )
        assert main(["db", "upgrade", "--url", where]) == 1
        assert f"which {problem}" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists() and not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///file:uri-db?mode=memory&uri=true",
        "sqlite:///plain.db",
        "sqlite:///missing/../dotdot.db",  # the driver opens ./dotdot.db
    ],
)
def test_sqlite_databases_with_no_directory_are_still_accepted(url: str) -> None:
    with ormsession.configure(url=url) as manager:
        session = manager.open(None)
        session["n"] = 1
        manager.save(session)
        assert manager.open(session.id)["n"] == 1


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://app:p@ss-7@127.0.0.1/app",  # SQLAlchemy: host 'ss-7@127.0.0.1'
        "mysql+pymysql://app:p@ss-7@127.0.0.1/app",
        "redis://app:p/ss-7@127.0.0.1:6379/0",  # the authority ends at '/': port 'p'
        "redis://:p?ss-7@127.0.0.1:6379/0",
        "redis://:p#ss-7@127.0.0.1:6379/0",
        "couchbase://app:p/ss-7@127.0.0.1/bucket",
        "couchbase://app:p#ss-7@127.0.0.1/bucket",
    ],
)
def test_an_unencoded_character_in_a_password_is_named_with_its_encoding(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ormsession.configure(url=url)
    message = str(caught.value)
    assert "must be percent-encoded" in message and "%40" in message
    assert "ss-7" not in message


def test_the_percent_encoding_hint_is_not_given_where_the_password_is_not_the_problem() -> None:
    with pytest.raises(ConfigurationError) as caught:
        ormsession.configure(url="redis://app:pw@127.0.0.1:6379/x")
    assert "percent-encoded" not in str(caught.value)


def test_another_known_scheme_without_slashes() -> None:
    with pytest.raises(ConfigurationError, match=r"needs '//' after 'redis:'"):
        ormsession.configure(url="redis:/127.0.0.1:6379")


@pytest.mark.parametrize("fresh_database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("schema_check", [True, False])
def test_the_apps_schema_error_names_a_command_that_fixes_this_store(
    fresh_database_url: str, schema_check: bool
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(fresh_database_url).set(password="pw-5")  # the server trusts 127.0.0.1
    text = url.render_as_string(hide_password=False)
    with pytest.raises(ormsession.SchemaError) as caught:
        ormsession.configure(text, schema_check=schema_check)
    shown = text.replace(":pw-5@", ":<password>@")
    assert str(caught.value).endswith(f"run: ormsession db upgrade --url '{shown}'")
    assert "pw-5" not in str(caught.value)


def test_an_env_file_named_by_the_caller_is_checked_too(tmp_path: Path) -> None:
    (tmp_path / "prod.env").write_text("ORMSESSION_URL=memory://\nORMSESSION_KEY_PREFX=a:\n")
    with pytest.raises(ConfigurationError, match=r"in prod\.env: .*ORMSESSION_KEY_PREFIX"):
        OrmsessionSettings(_env_file="prod.env")
    settings = OrmsessionSettings(_env_file=("missing.env",))
    assert settings.url.get_secret_value() != "memory://"


def test_an_integration_announces_its_store_through_configure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ormsession.integrations.wsgi import SessionMiddleware

    def app(environ: object, start_response: object) -> list[bytes]:
        return [b""]

    with caplog.at_level(logging.INFO, logger="ormsession"):
        SessionMiddleware(app).close()
        SessionMiddleware(app, url="memory://").close()
    default, chosen = announced(caplog)
    assert default.levelno == logging.WARNING
    assert str(tmp_path / "ormsession.sqlite3") in default.getMessage()
    assert chosen.levelno == logging.INFO and "memory" in chosen.getMessage()


def test_a_misspelt_key_in_flask_app_config_is_refused_too() -> None:
    from flask import Flask

    from ormsession.integrations.flask import OrmSession

    app = Flask(__name__)
    app.config.update(ORMSESSION_URL="memory://", ORMSESSION_COOKIE_NAM="sid")
    with pytest.raises(
        ConfigurationError, match=r"in app\.config: ORMSESSION_COOKIE_NAM"
    ) as caught:
        OrmSession(app)
    assert "did you mean ORMSESSION_COOKIE_NAME?" in str(caught.value)


@pytest.mark.parametrize("option", ["idle_timeout", "absolute_timeout"])
def test_a_timeout_past_what_a_store_can_date_is_a_configuration_error(option: str) -> None:
    # An expiry past year 9999 failed every save: OverflowError on SQLite, a Redis error.
    longest = {"idle_timeout": dt.timedelta(days=365_000), "absolute_timeout": None}
    with ormsession.configure(
        url="sqlite://", **(longest | {option: dt.timedelta(days=365_000)})
    ) as m:
        session = m.open(None)
        session["n"] = 1
        m.save(session)
        assert m.open(session.id)["n"] == 1
    for too_long in (dt.timedelta(days=365_001), dt.timedelta(days=999_999_999), "3000000d"):
        with pytest.raises(ConfigurationError, match=f"{option} .* is longer than 365000 days"):
            ormsession.configure(url="sqlite://", **(longest | {option: too_long}))
