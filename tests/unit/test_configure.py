"""configure(), the configuration and the store registry: from outside, with clear errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import ormsession
from ormsession.config import Config, parse_duration
from ormsession.errors import ConfigurationError, MissingDriverError
from ormsession.repositories import registry
from ormsession.repositories.memory import MemoryRepository
from ormsession.settings import OrmsessionSettings
from ormsession.urls import redact_url


def test_a_config_built_directly_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORMSESSION_COOKIE_NAME", "from_env")
    assert Config().cookie_name == "session"
    assert OrmsessionSettings().cookie_name == "from_env"


def test_a_config_is_frozen_and_replace_validates() -> None:
    config = Config(max_attempts=3)
    with pytest.raises(ConfigurationError):
        config.max_attempts = 4  # type: ignore[misc]
    assert config.replace(max_attempts=5).max_attempts == 5
    assert config.max_attempts == 3
    with pytest.raises(ConfigurationError, match="max_attempts"):
        config.replace(max_attempts=0)
    with pytest.raises(ConfigurationError, match="unknown option"):
        config.replace(max_attempt=5)


def test_the_cookie_and_expiry_rules_are_checked_when_the_config_is_built() -> None:
    with pytest.raises(ConfigurationError, match="__Host-"):
        Config(cookie_host_prefix=True, cookie_secure=False)
    config = Config(idle_timeout="2h", cookie_lifetime=60)
    assert config.expiry.idle_timeout == dt.timedelta(hours=2)
    assert config.cookie.max_age == dt.timedelta(seconds=60)


def test_managers_take_the_config_they_are_given() -> None:
    config = Config(url="memory://", max_data_bytes=100, cookie_name="sid")
    with ormsession.configure(config=config) as manager:
        assert manager.config is config
        assert manager.cookie.cookie_name == "sid"
        session = manager.open(None)
        session["big"] = "x" * 200
        with pytest.raises(ormsession.SessionTooLargeError):
            manager.save(session)


def test_configure_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORMSESSION_URL", "memory://")
    monkeypatch.setenv("ORMSESSION_COOKIE_NAME", "sid")
    monkeypatch.setenv("ORMSESSION_IDLE_TIMEOUT", "30m")
    monkeypatch.setenv("ORMSESSION_COOKIE_LIFETIME", "3600")
    with ormsession.configure() as manager:
        assert isinstance(manager.repository, MemoryRepository)
        assert manager.cookie.name == "sid"
        assert manager.cookie.max_age == dt.timedelta(hours=1)
        assert manager.expiry.idle_timeout == dt.timedelta(minutes=30)


def test_explicit_options_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORMSESSION_COOKIE_NAME", "from_env")
    with ormsession.configure(url="memory://", cookie_name="explicit") as manager:
        assert manager.cookie.name == "explicit"


def test_dotenv_file_is_read_and_foreign_keys_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "ORMSESSION_URL=memory://\nORMSESSION_COOKIE_NAME=dotenv\nSOME_APP_SETTING=1\n"
    )
    monkeypatch.chdir(tmp_path)
    with ormsession.configure() as manager:
        assert manager.cookie.name == "dotenv"


def test_the_default_is_an_embedded_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORMSESSION_URL", raising=False)
    with ormsession.configure() as manager:
        session = manager.open(None)
        session["x"] = 1
        assert manager.save(session) is not None
    assert (tmp_path / "ormsession.sqlite3").exists()


def test_unknown_options_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown option.*cookie_nmae"):
        ormsession.configure(url="memory://", cookie_nmae="x")  # type: ignore[call-arg]


def test_an_unknown_option_names_the_closest_one_as_the_environment_does() -> None:
    with pytest.raises(ConfigurationError) as caught:
        ormsession.configure(url="memory://", cookie_nam="x", zzz=1)  # type: ignore[call-arg]
    message = str(caught.value)
    assert "cookie_nam (did you mean cookie_name?)" in message
    assert ", zzz; valid options:" in message  # nothing close to it: no guess


def test_invalid_values_are_explained_without_echoing_them() -> None:
    with pytest.raises(ConfigurationError, match="refresh_ratio") as caught:
        ormsession.configure(url="memory://", refresh_ratio=7.5)
    assert "7.5" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nosuch://x", "scheme must be one of"),
        ("not a url", "scheme must be one of"),
        ("postgres://u:pw@h/db", "postgresql://"),
        ("oracle+cx://u:pw@h/db", "scheme must be one of"),
    ],
)
def test_wrong_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        ormsession.configure(url=url)
    assert "pw@" not in str(caught.value)


def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_import(name: str) -> None:
        error = ImportError("No module named 'redis'")
        error.name = "redis"
        raise error

    monkeypatch.setattr(registry, "import_module", broken_import)
    with pytest.raises(MissingDriverError, match=r"pip install 'ormsession\[redis\]'"):
        ormsession.configure(url="redis://127.0.0.1:6379/0")


def test_ready_clients_of_unknown_types_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="cannot build a session store"):
        ormsession.configure(client=object())


def test_engine_and_async_factories_refuse_the_other_kind() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.ext.asyncio import create_async_engine

    async_engine = create_async_engine("sqlite+aiosqlite://")
    with pytest.raises(ConfigurationError, match="configure_async"):
        ormsession.configure(engine=async_engine)  # type: ignore[arg-type]
    import asyncio

    with pytest.raises(ConfigurationError, match="AsyncEngine"):
        asyncio.run(ormsession.configure_async(engine=create_engine("sqlite://")))


def test_reprs_and_errors_hide_passwords() -> None:
    settings = OrmsessionSettings(url="postgresql://app:topsecret@db/app")
    assert "topsecret" not in repr(settings) and "topsecret" not in str(settings)
    config = Config(url="postgresql://app:topsecret@db/app")
    assert "topsecret" not in repr(config) and "topsecret" not in str(config)
    assert redact_url("redis://:pw1@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("couchbase://u:s3cr@t@h/b") == "couchbase://u:***@h/b"
    assert (
        redact_url("redis+sentinel://u:pw2@h1:1,h2:2/m?sentinel_password=pw3")
        == "redis+sentinel://u:***@h1:1,h2:2/m?sentinel_password=***"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600),
        ("90s", 90),
        ("30m", 1800),
        ("12h", 43200),
        ("14d", 1209600),
        ("2w", 1209600),
        ("1.5h", 5400),
    ],
)
def test_durations_from_the_environment(text: str, seconds: float) -> None:
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


def test_import_ormsession_does_not_import_asyncio_sqlalchemy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, ormsession; "
        "print('sqlalchemy.ext.asyncio' in sys.modules, 'greenlet' in sys.modules, "
        "'flask' in sys.modules, 'redis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False", "False"]


@pytest.mark.parametrize("zero", ["0", " 0 ", "", "none", "None", "0s", 0, dt.timedelta(0)])
def test_zero_turns_the_optional_durations_off(zero: object) -> None:
    config = Config(absolute_timeout=zero, cookie_lifetime=zero)
    assert config.absolute_timeout is None and config.cookie_lifetime is None


def test_zero_in_the_environment_turns_them_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORMSESSION_ABSOLUTE_TIMEOUT", "0")
    monkeypatch.setenv("ORMSESSION_COOKIE_LIFETIME", "0")
    settings = OrmsessionSettings()
    assert settings.absolute_timeout is None and settings.cookie_lifetime is None


@pytest.mark.parametrize(
    ("text", "expected"), [("PT1H", 3600), ("pt30m", None), ("01:30:00", 5400)]
)
def test_iso_8601_and_clock_durations(text: str, expected: int | None) -> None:
    if expected is None:
        with pytest.raises(ConfigurationError, match="idle_timeout"):
            Config(idle_timeout=text)
    else:
        assert Config(idle_timeout=text).idle_timeout == dt.timedelta(seconds=expected)


@pytest.mark.parametrize("huge", ["inf", "1e400", "99999999999d", "nan"])
def test_durations_out_of_range_are_configuration_errors(huge: str) -> None:
    with pytest.raises(ConfigurationError, match="idle_timeout"):
        Config(idle_timeout=huge)


def test_a_bad_id_prefix_is_refused_when_the_config_is_built() -> None:
    with pytest.raises(ConfigurationError, match="id_prefix"):
        Config(id_prefix="has space")


def test_a_missing_serializer_driver_fails_before_any_store_is_opened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    opened: list[object] = []
    real_open = registry.open_store

    def recording_open(*args: object, **kwargs: object) -> object:
        opened.append(args)
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sys.modules["ormsession.configure"], "open_store", recording_open)
    monkeypatch.setitem(sys.modules, "msgpack", None)  # import msgpack -> ImportError
    with pytest.raises(MissingDriverError, match="msgpack"):
        ormsession.configure(url="memory://", serializer="msgpack")
    assert opened == []
