"""Redis store URLs: parsing, every option, and errors that never show a password."""

from __future__ import annotations

from pathlib import Path

import pytest

from ormsession.errors import ConfigurationError
from ormsession.repositories.redis.clients import _node_kwargs, _sentinel_kwargs
from ormsession.repositories.redis.factory import open_store
from ormsession.repositories.redis.urls import OPTIONS, parse_redis_url
from ormsession.settings import load_config


def test_plain_url_with_credentials_port_and_db() -> None:
    url = parse_redis_url("redis://app:s%40cret@cache.internal:6380/3")
    assert url.mode == "standalone"
    assert url.hosts == (("cache.internal", 6380),)
    assert (url.username, url.password, url.db, url.tls) == ("app", "s@cret", 3, False)
    assert url.redacted == "redis://app:***@cache.internal:6380/3"


def test_defaults_of_a_bare_url() -> None:
    url = parse_redis_url("redis://localhost")
    assert url.hosts == (("localhost", 6379),)
    assert (url.db, url.username, url.password, url.wait_replicas, url.retries) == (
        0,
        None,
        None,
        0,
        1,
    )


def test_password_only_userinfo() -> None:
    url = parse_redis_url("redis://:pw@h/0")
    assert (url.username, url.password) == (None, "pw")


def test_tls_and_ipv6() -> None:
    url = parse_redis_url("rediss://[::1]:6390/1?ssl_cert_reqs=none")
    assert url.tls and url.hosts == (("::1", 6390),) and url.db == 1
    assert url.ssl_cert_reqs == "none"


def test_unix_socket() -> None:
    url = parse_redis_url("unix://:pw@/run/redis/redis.sock?db=2")
    assert (url.unix_path, url.db, url.password, url.hosts) == (
        "/run/redis/redis.sock",
        2,
        "pw",
        (),
    )


def test_sentinel_url() -> None:
    url = parse_redis_url(
        "redis+sentinel://u:datapw@s1:26380,s2,[::1]:26381/cache/4"
        "?sentinel_password=sentpw&sentinel_username=watch&wait_replicas=1&wait_timeout_ms=250"
    )
    assert url.mode == "sentinel"
    assert url.hosts == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert (url.service_name, url.db) == ("cache", 4)
    assert (url.username, url.password) == ("u", "datapw")
    assert (url.sentinel_username, url.sentinel_password) == ("watch", "sentpw")
    assert (url.wait_replicas, url.wait_timeout_ms) == (1, 250)
    assert "sentpw" not in url.redacted and "datapw" not in url.redacted
    assert set(url.secrets) == {"datapw", "sentpw"}


@pytest.mark.parametrize("path", ["", "/", "//"])
def test_sentinel_service_defaults_to_mymaster(path: str) -> None:
    url = parse_redis_url(f"redis+sentinel://s1{path}")
    assert (url.service_name, url.db) == ("mymaster", 0)


def test_cluster_url() -> None:
    url = parse_redis_url("redis+cluster://:pw@n1:7000,n2:7001,n3?max_connections=20")
    assert url.mode == "cluster"
    assert url.hosts == (("n1", 7000), ("n2", 7001), ("n3", 6379))
    assert url.max_connections == 20 and url.password == "pw"
    assert parse_redis_url("redis+cluster://n1:7000/0").db == 0


def test_every_option_is_parsed() -> None:
    url = parse_redis_url(
        "redis://h/0?max_connections=7&socket_timeout=1.5&socket_connect_timeout=0.5"
        "&key_prefix=app1:&wait_replicas=2&wait_timeout_ms=100&retries=0"
        "&health_check_interval=30&client_name=web"
    )
    assert url.max_connections == 7
    assert (url.socket_timeout, url.socket_connect_timeout) == (1.5, 0.5)
    assert url.key_prefix == "app1:"
    assert (url.wait_replicas, url.wait_timeout_ms, url.retries) == (2, 100, 0)
    assert (url.health_check_interval, url.client_name) == (30, "web")


def test_options_table_is_documented() -> None:
    text = (Path(__file__).parents[2] / "docs" / "stores" / "redis.md").read_text()
    missing = [name for name in OPTIONS if f"`{name}`" not in text]
    assert missing == [], "every URL option must be in the docs' table"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://h/0?bogus=1", "unknown option 'bogus'"),
        ("redis://h/0?max_connections=0", "max_connections must be a positive integer"),
        ("redis://h/0?max_connections=many", "max_connections must be a positive integer"),
        ("redis://h/0?socket_timeout=-1", "socket_timeout must be a positive number"),
        ("redis://h/0?socket_timeout=nan", "socket_timeout must be a positive number"),
        ("redis://h/0?retries=1&retries=2", "given twice"),
        ("redis://h/0?key_prefix=", "key_prefix must be a non-empty"),
        ("redis://h/0?wait_timeout_ms=0", "wait_timeout_ms must be a positive"),
        ("redis://h/x", "database must be a number"),
        ("redis://h/1?db=2", "given both in the path and as db="),
        ("redis://h1,h2/0", "takes one host"),
        ("redis:///0", "no host given"),
        ("redis://h:99999/0", "port must be a number from 1 to 65535"),
        ("redis://h:port/0", "port must be a number"),
        ("redis://bad host/0", "each host must be"),
        ("redis://h/0#frag", "fragment"),
        ("redis://h/0?ssl=true", "use rediss://"),
        ("redis://h/0?ssl_ca_certs=/ca.pem", "need TLS"),
        ("unix://host/sock", "takes a socket path"),
        ("unix://", "needs the socket's path"),
        ("redis+sentinel://s1/svc/1/extra", "/<service_name>[/<db>]"),
        ("redis+cluster://n1/2", "only database 0"),
        ("redis+cluster://n1?wait_replicas=1", "does not apply to cluster URLs"),
        ("redis+cluster://n1?db=1", "does not apply to cluster URLs"),
        ("redis://h/0?sentinel_password=x", "does not apply to standalone URLs"),
        ("redis://h/0?ssl_cert_reqs=maybe", "none, optional or required"),
        ("memcached://h", "scheme must be one of"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid Redis URL") as caught:
        parse_redis_url(url)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:topsecret@h/0?bogus=1",
        "redis://user:topsecret@h/0?max_connections=x",
        "redis+sentinel://:topsecret@s1/m?sentinel_password=topsecret&x=1",
        "redis+sentinel://s1/m?sentinel_password=topsecret&sentinel_password=topsecret",
        "redis+cluster://:topsecret@n1/5",
    ],
)
def test_errors_never_show_passwords(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_redis_url(url)
    assert "topsecret" not in str(caught.value)
    assert "***" in str(caught.value)


def test_reprs_never_show_passwords() -> None:
    url = "redis+sentinel://:topsecret@s1/m?sentinel_password=alsosecret"
    parsed = parse_redis_url(url)
    assert "topsecret" not in repr(parsed) and "alsosecret" not in repr(parsed)
    repository = open_store(url, load_config(), want_async=False)
    try:
        assert "topsecret" not in repr(repository) and "alsosecret" not in repr(repository)
    finally:
        repository.close()
    async_repository = open_store(url, load_config(), want_async=True)
    assert "topsecret" not in repr(async_repository)


def test_store_options_are_validated_before_any_io() -> None:
    settings = load_config()
    with pytest.raises(ConfigurationError, match="key_prefix must not contain"):
        open_store("redis://127.0.0.1:9/0?key_prefix=app*", settings, want_async=False)
    with pytest.raises(ConfigurationError, match="wait_timeout_ms must be shorter"):
        open_store(
            "redis://127.0.0.1:9/0?wait_replicas=1&wait_timeout_ms=5000", settings, want_async=False
        )


def test_timeouts_default_to_the_store_timeout_setting() -> None:
    settings = load_config(store_timeout=2.5, pool_size=9)
    kwargs = _node_kwargs(parse_redis_url("redis://h/0"), settings)
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (2.5, 2.5)
    assert kwargs["max_connections"] == 9
    url = parse_redis_url("redis://h/0?socket_timeout=1&max_connections=3")
    kwargs = _node_kwargs(url, settings)
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (1.0, 2.5)
    assert kwargs["max_connections"] == 3


def test_sentinel_and_data_credentials_go_to_their_own_connections() -> None:
    url = parse_redis_url("redis+sentinel://du:dpw@s1/m?sentinel_username=su&sentinel_password=spw")
    node = _node_kwargs(url, load_config())
    sentinel = _sentinel_kwargs(url, node)
    assert (node["username"], node["password"]) == ("du", "dpw")
    assert (sentinel["username"], sentinel["password"]) == ("su", "spw")
