"""beego provider strings and ManagerConfig JSON, arbitrary: a configuration that builds a
store (offline), or a ConfigurationError; nothing else, and no password in a message."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ormsession import beego
from ormsession.errors import ConfigurationError
from tests.properties.offline import configure_offline, shown_cause

SECRET = "Pw9zQx"
PROVIDERS = sorted(beego.PROVIDERS)
#: What provider strings are made of: separators of every provider's format, and the
#: JSON forms' keys, so the examples reach past the first check.
PIECES = st.sampled_from(
    [
        "127.0.0.1", ":6379", ":3306", "tcp(", ")", "unix(", "/", "?", "&", "=", ",", ";",
        "@", ":", "'", '"', "{", "}", "\\", " ", "0", "-1", "99999", "x", "é", "\x00",
        "user=", "password=", "dbname=", "host=", "port=", "sslmode=", "charset=",
        "timeout=", "5s", "1m30s", "save_path", "poolsize", "password", "dbNum",
        "idle_timeout", "max_retries", "master_name", "postgres://", "http://", "h", "²",
    ]
)  # fmt: skip
provider_strings = st.lists(PIECES, max_size=12).map("".join) | st.text(max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
MANAGER_KEYS = [
    "cookieName", "gclifetime", "maxLifetime", "enableSetCookie", "disableHTTPOnly",
    "secure", "cookieLifeTime", "domain", "sessionIDLength", "EnableSidInHTTPHeader",
    "SessionNameInHTTPHeader", "EnableSidInURLQuery", "sessionIDPrefix", "cookieSameSite",
]  # fmt: skip


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as runner:
        yield runner


def no_secret(error: BaseException) -> None:
    link: BaseException | None = error
    while link is not None:
        assert SECRET not in str(link), str(link)
        link = shown_cause(link)


def build(provider: str, config: Any, runner: asyncio.Runner) -> None:
    """Configure from beego's values, offline: a store or a ConfigurationError, and
    ``SECRET`` (planted only where a provider string holds a password) never shown."""
    try:
        settings_ = beego.config_from_beego(provider, config)
        shown = configure_offline(settings_.url.get_secret_value(), runner)
    except ConfigurationError as exc:
        event("refused")
        no_secret(exc)
        return
    event("configured")
    for text in (*shown, repr(settings_), settings_.model_dump_json()):
        assert SECRET not in text


@settings(max_examples=400)
@given(provider=st.sampled_from(PROVIDERS), text=provider_strings)
def test_arbitrary_provider_strings(runner: asyncio.Runner, provider: str, text: str) -> None:
    build(provider, {"providerConfig": text}, runner)


#: Each provider's format with its password field set to ``SECRET`` + arbitrary text.
WITH_PASSWORD = {
    "mysql": "user:{pw}@tcp(127.0.0.1:3306)/db{junk}",
    "postgresql": "user=u password={pw}{junk} host=127.0.0.1 dbname=db",
    "redis": "127.0.0.1:6379,100,{pw}{junk},0",
    "redis_sentinel": "127.0.0.1:26379;h:26379,100,{pw}{junk},0,mymaster",
    "redis_cluster": "127.0.0.1:7000;h:7001,100,{pw}{junk}",
    "couchbase": "http://user:{pw}{junk}@127.0.0.1:8091/,default,sessions",
}


@settings(max_examples=300)
@given(provider=st.sampled_from(sorted(WITH_PASSWORD)), junk=provider_strings)
def test_a_password_in_a_provider_string_is_never_shown(
    runner: asyncio.Runner, provider: str, junk: str
) -> None:
    text = WITH_PASSWORD[provider].format(pw=SECRET, junk=junk)
    build(provider, {"providerConfig": text}, runner)


@settings(max_examples=200)
@given(
    provider=st.sampled_from(PROVIDERS),
    values=st.dictionaries(st.sampled_from(MANAGER_KEYS), json_values, max_size=5),
)
def test_arbitrary_manager_config_values(
    runner: asyncio.Runner, provider: str, values: dict[str, Any]
) -> None:
    build(provider, values | {"providerConfig": ""}, runner)
    build(provider, json.dumps(values | {"providerConfig": ""}), runner)


@settings(max_examples=100)
@given(text=st.text(max_size=40))
def test_arbitrary_manager_config_text(runner: asyncio.Runner, text: str) -> None:
    build("memory", text, runner)
