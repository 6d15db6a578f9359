"""``couchbase://`` URL parsing: every option, every refusal, and no password in any message."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ormsession.errors import ConfigurationError
from ormsession.repositories.couchbase.base import KeyLayout
from ormsession.repositories.couchbase.urls import parse_couchbase_url

SECRET = "s3cr3t-P@ss"


def test_a_full_url() -> None:
    target = parse_couchbase_url(
        "couchbase://app:pw@cb1.example:11210,cb2.example/sessions"
        "?scope=web&collection=items&kv_timeout=1.5&connect_timeout=500ms"
        "&key_prefix=shop:&count_resolution=64&cas_cache_size=0",
        key_prefix="ignored:",
        connect_timeout=9,
    )
    assert target.connection_string == "couchbase://cb1.example:11210,cb2.example"
    assert (target.bucket, target.scope, target.collection) == ("sessions", "web", "items")
    assert (target.username, target.password) == ("app", "pw")
    assert target.kv_timeout == timedelta(seconds=1.5)
    assert target.connect_timeout == timedelta(milliseconds=500)
    assert target.key_prefix == "shop:"
    assert (target.count_resolution, target.cas_cache_size) == (64, 0)


def test_defaults_come_from_settings_and_the_sdk() -> None:
    target = parse_couchbase_url(
        "couchbases://u:p@10.0.0.1/b", key_prefix="app:", connect_timeout=3
    )
    assert target.connection_string == "couchbases://10.0.0.1"
    assert (target.scope, target.collection) == ("_default", "_default")
    assert target.key_prefix == "app:"
    assert target.connect_timeout == timedelta(seconds=3)
    assert target.kv_timeout == timedelta(seconds=2.5)
    assert (target.count_resolution, target.cas_cache_size) == (32, 10_000)


def test_credentials_in_the_query_and_percent_encoding() -> None:
    query = parse_couchbase_url("couchbase://h/b?username=app&password=p%40ss%3Aword")
    assert (query.username, query.password) == ("app", "p@ss:word")
    userinfo = parse_couchbase_url("couchbase://app%40corp:p%40ss%3Aword@h/b")
    assert (userinfo.username, userinfo.password) == ("app@corp", "p@ss:word")


def test_a_collection_in_the_default_scope() -> None:
    target = parse_couchbase_url("couchbase://u:p@h/b?collection=sessions")
    assert (target.scope, target.collection) == ("_default", "sessions")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://u:{pw}@h/b", "not a couchbase"),
        ("couchbase://u:{pw}@h", "name the bucket"),
        ("couchbase://u:{pw}@h/", "name the bucket"),
        ("couchbase://u:{pw}@/b", "name at least one host"),
        ("couchbase://u:{pw}@h1,,h2/b", "name at least one host"),
        ("couchbase://u:{pw}@h:99999/b", "not a host"),
        ("couchbase://u:{pw}@h/b/extra", "not a Couchbase bucket name"),
        ("couchbase://u:{pw}@h/b?kv_timout=1", "unknown couchbase URL option 'kv_timout'"),
        ("couchbase://u:{pw}@h/b?scope=s", "also needs &collection="),
        ("couchbase://u:{pw}@h/b?scope=_s&collection=c", "not a Couchbase scope name"),
        ("couchbase://u:{pw}@h/b?kv_timeout=0", "kv_timeout must be a positive"),
        ("couchbase://u:{pw}@h/b?kv_timeout=soon", "kv_timeout must be a positive"),
        ("couchbase://u:{pw}@h/b?connect_timeout=-1", "connect_timeout must be a positive"),
        ("couchbase://u:{pw}@h/b?count_resolution=0", "count_resolution must be 1-1024"),
        ("couchbase://u:{pw}@h/b?count_resolution=2000", "count_resolution must be 1-1024"),
        ("couchbase://u:{pw}@h/b?cas_cache_size=-1", "cas_cache_size must be 0-1000000"),
        ("couchbase://u:{pw}@h/b?cas_cache_size=lots", "cas_cache_size must be 0-1000000"),
        ("couchbase://u:{pw}@h/b?scope=a&scope=b&collection=c", "given twice"),
        ("couchbase://u:{pw}@h/b?password={pw}", "credentials once"),
        ("couchbase://h/b?password={pw}", "need a username and a password"),
        ("couchbase://u@h/b", "need a username and a password"),
        ("couchbase://h/b", "needs credentials"),
        ("couchbase://u:{pw}@h/b#frag", "no #fragment"),
    ],
)
def test_bad_urls_are_configuration_errors_without_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        parse_couchbase_url(url.format(pw=SECRET))
    assert SECRET not in str(caught.value)


def test_the_obsolete_index_shards_option_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = parse_couchbase_url(f"couchbase://u:{SECRET}@h/b?index_shards=64")
    assert target.bucket == "b"
    assert "index_shards is obsolete and ignored" in caplog.text
    assert SECRET not in caplog.text


def test_credentials_are_optional_for_a_url_that_only_names_the_keyspace() -> None:
    target = parse_couchbase_url("couchbase://unused/b", require_credentials=False)
    assert (target.username, target.password, target.bucket) == (None, None, "b")


def test_the_target_repr_hides_the_password() -> None:
    target = parse_couchbase_url(f"couchbase://u:{SECRET}@h/b?key_prefix=x:")
    assert SECRET not in repr(target)
    assert SECRET not in target.display
    assert "u:***@h/b" in repr(target)


@pytest.mark.parametrize("prefix", ["", "ormsession:", "app.v2-sessions_", "a" * 100])
def test_valid_key_prefixes(prefix: str) -> None:
    assert KeyLayout(prefix).document_key("a" * 64) == prefix + "a" * 64


@pytest.mark.parametrize("prefix", ["a b", "x/y", "é", "a" * 101, "key\n", "{prefix}"])
def test_invalid_key_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="key_prefix"):
        KeyLayout(prefix)


@pytest.mark.parametrize("key", ["raw-session-id", "A" * 64, "a" * 63, "a" * 65, "g" * 64])
def test_only_storage_keys_become_document_ids(key: str) -> None:
    with pytest.raises(ValueError, match="not a storage key"):
        KeyLayout("p:").document_key(key)
