"""The small pieces behind hostile-input handling: URL redaction, the secret URL type,
host checks and the SQL row readers' coercions."""

from __future__ import annotations

import logging

import pytest

from ormsession import Config, SecretUrl
from ormsession.repositories.sql.statements import columns_record
from ormsession.urls import host_problem, redact_url, scheme_of


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://u:pw@h/0", "redis://u:***@h/0"),
        ("redis://u:p@w@h/0", "redis://u:***@h/0"),
        ("redis://u:p/w@h/0", "redis://u:***@h/0"),
        ("redis://u:p#w@h/0", "redis://u:***@h/0"),
        ("redis://u:p?w@h/0", "redis://u:***@h/0"),
        ("user:pw@host/db", "user:***@host/db"),
        ("postgresql://u@h/db?password=p#w&x=1", "postgresql://u@h/db?password=***&x=1"),
        ("redis+sentinel://h/m?sentinel_password=pw", "redis+sentinel://h/m?sentinel_password=***"),
        ("postgresql://u@h/db?sslpassword=pw", "postgresql://u@h/db?sslpassword=***"),
        ("sqlite:////srv/a@b/x.db", "sqlite:////srv/a@b/x.db"),
        ("redis://h/0", "redis://h/0"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_scheme_of_never_parses_the_rest() -> None:
    assert scheme_of("redis://[::1") == "redis"
    assert scheme_of("Redis+Sentinel://x") == "redis+sentinel"
    assert scheme_of("user:pw@host/db") == scheme_of("") == ""


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1", True),
        ("[::1]", True),
        ("::1", True),
        ("db_1.internal", True),
        ("a" * 63, True),
        ("a" * 64, False),
        (".".join(["a" * 63] * 4), False),
        ("[nope]", False),
        ("-a", False),
        ("é", False),
        ("", False),
    ],
)
def test_host_problem(host: str, ok: bool) -> None:
    assert (host_problem(host) is None) is ok


def test_config_url_is_a_secret_url() -> None:
    config = Config(url="  postgresql://u:pw@h/db?password=pw2 \n")
    assert isinstance(config.url, SecretUrl)
    assert config.url.get_secret_value() == "postgresql://u:pw@h/db?password=pw2"
    for shown in (repr(config), str(config.url), config.model_dump_json(), config.model_dump()):
        assert "pw@" not in str(shown) and "pw2" not in str(shown)
    assert config.replace(table_name="t").url == config.url  # survives a copy
    assert Config(**config.model_dump()).url == config.url
    assert Config(url=config.url).url == config.url


def test_a_text_data_column_is_its_utf8_and_an_unreadable_row_is_absent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    when = "2026-01-01 00:00:00.000000"
    record = columns_record(('{"a":"é"}', 3, when, when, None))
    assert record is not None and record.data == '{"a":"é"}'.encode() and record.version == 3
    with caplog.at_level(logging.WARNING, logger="ormsession"):
        assert columns_record((b"{}", "v2", when, when, None)) is None
        assert columns_record((b"{}", 1, "never", when, None)) is None
    assert caplog.text.count("unreadable session row") == 2
