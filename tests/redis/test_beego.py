"""beego's redis, redis_sentinel and redis_cluster provider strings, including the
cases beego itself got wrong."""

from __future__ import annotations

import pytest

import ormsession.beego
from ormsession.errors import ConfigurationError
from ormsession.repositories.redis.beego import (
    parse_cluster_provider,
    parse_redis_provider,
    parse_sentinel_provider,
)
from ormsession.repositories.redis.urls import parse_redis_url


# -- redis ---------------------------------------------------------------------------------
def test_redis_old_style_every_field() -> None:
    url, settings = parse_redis_provider("127.0.0.1:6380,50,pa ss@,3,30,10,4")
    assert settings == {}
    assert url == (
        "redis://:pa%20ss%40@127.0.0.1:6380/3?max_connections=50&health_check_interval=30&retries=4"
    )
    parsed = parse_redis_url(url)
    assert (parsed.password, parsed.db, parsed.max_connections) == ("pa ss@", 3, 50)
    assert (parsed.health_check_interval, parsed.retries) == (30, 4)


def test_redis_old_style_defaults() -> None:
    # beego: pool 100, no password, db 0.
    assert parse_redis_provider("127.0.0.1:6379")[0] == (
        "redis://127.0.0.1:6379/0?max_connections=100"
    )
    assert parse_redis_provider("127.0.0.1:6379,,,,")[0] == (
        "redis://127.0.0.1:6379/0?max_connections=100"
    )


def test_redis_fields_are_trimmed() -> None:
    # beego did not trim: " 0" failed Atoi and silently became db 0.
    url, _ = parse_redis_provider("  redis.internal:6379 , 20 , pw , 2 ")
    assert url == "redis://:pw@redis.internal:6379/2?max_connections=20"


def test_redis_pool_size_zero_means_the_driver_default() -> None:
    assert parse_redis_provider("h:6379,0")[0] == "redis://h:6379/0"


@pytest.mark.parametrize(
    ("config", "field"),
    [("h:6379,lots", "poolsize"), ("h:6379,10,pw,-1", "dbnum"), ("h:6379,10,pw,0,soon", "idle")],
)
def test_redis_garbage_numbers_are_errors_not_silent_defaults(config: str, field: str) -> None:
    with pytest.raises(ConfigurationError, match=field) as caught:
        parse_redis_provider(config)
    assert "pw" not in str(caught.value)


def test_redis_json_form() -> None:
    url, _ = parse_redis_provider(
        '{"save_path": "127.0.0.1:6379", "poolsize": 10, "password": "pw", "db_num": 1,'
        ' "idle_timeout": "1m30s", "idle_check_frequency": "10s", "max_retries": 2}'
    )
    assert url == (
        "redis://:pw@127.0.0.1:6379/1?max_connections=10&health_check_interval=90&retries=2"
    )


def test_redis_json_without_durations_works() -> None:
    # beego failed here: time.ParseDuration("") is an error.
    url, _ = parse_redis_provider('{"save_path": "127.0.0.1:6379"}')
    assert url == "redis://127.0.0.1:6379/0?max_connections=100"
    url, _ = parse_redis_provider('{"save_path": "h:1", "idle_timeout": 45}')
    assert url == "redis://h:1/0?max_connections=100&health_check_interval=45"


@pytest.mark.parametrize(
    "config",
    [
        "{not json",
        "[1, 2]",
        '{"save_path": "h:1", "idle_timeout": "forever"}',
        '{"save_path": "h:1", "idle_check_frequency": "5 minutes"}',
        '{"save_path": "h:1", "poolsize": true}',
        '{"save_path": "h:1", "db_num": -2}',
    ],
)
def test_redis_bad_json_is_an_error(config: str) -> None:
    with pytest.raises(ConfigurationError, match="beego redis"):
        parse_redis_provider(config)


@pytest.mark.parametrize("config", ["", "   ", ",10,pw", '{"poolsize": 10}'])
def test_no_address_is_an_error_never_localhost(config: str) -> None:
    with pytest.raises(ConfigurationError, match="no Redis address"):
        parse_redis_provider(config)


def test_redis_takes_one_address() -> None:
    with pytest.raises(ConfigurationError, match="one host:port"):
        parse_redis_provider("h1:6379;h2:6379,10")


# -- redis_sentinel --------------------------------------------------------------------------
def test_sentinel_old_style_is_read_at_the_right_positions() -> None:
    # beego read idle_timeout from the master-name field (configs[4]) and so on: one early.
    url, _ = parse_sentinel_provider("10.0.0.1:26379;10.0.0.2:26379,30,pw,2,cache,60,5,3")
    assert url == (
        "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/cache/2"
        "?max_connections=30&health_check_interval=60&retries=3"
    )
    parsed = parse_redis_url(url)
    assert parsed.service_name == "cache" and parsed.hosts[1] == ("10.0.0.2", 26379)
    assert (parsed.health_check_interval, parsed.retries) == (60, 3)


def test_sentinel_defaults_master_name_and_pool() -> None:
    url, _ = parse_sentinel_provider("s1:26379;s2:26379")
    assert url == "redis+sentinel://s1:26379,s2:26379/mymaster/0?max_connections=100"
    url, _ = parse_sentinel_provider("s1:26379 ; s2:26379 , , , , ")
    assert url == "redis+sentinel://s1:26379,s2:26379/mymaster/0?max_connections=100"


def test_sentinel_json_with_master_name() -> None:
    url, _ = parse_sentinel_provider(
        '{"save_path": "s1:26379;s2:26380", "poolsize": 5, "password": "pw", "db_num": 1,'
        ' "master_name": "sessions"}'
    )
    assert url == "redis+sentinel://:pw@s1:26379,s2:26380/sessions/1?max_connections=5"


# -- redis_cluster ---------------------------------------------------------------------------
def test_cluster_old_style() -> None:
    url, _ = parse_cluster_provider("n1:7000;n2:7001;n3:7002,64,pw,0,30")
    assert url == (
        "redis+cluster://:pw@n1:7000,n2:7001,n3:7002?max_connections=64&health_check_interval=30"
    )
    assert parse_redis_url(url).hosts == (("n1", 7000), ("n2", 7001), ("n3", 7002))


def test_cluster_ignores_the_database_number_as_beego_did() -> None:
    url, _ = parse_cluster_provider("n1:7000;n2:7001,10,,5")
    assert url == "redis+cluster://n1:7000,n2:7001?max_connections=10"
    parse_redis_url(url)


def test_cluster_json() -> None:
    url, _ = parse_cluster_provider('{"save_path": "n1:7000;n2:7001", "max_retries": 1}')
    assert url == "redis+cluster://n1:7000,n2:7001?max_connections=100&retries=1"


# -- through ormsession.beego -----------------------------------------------------------------
def test_beego_manager_config_reaches_the_redis_store() -> None:
    settings = ormsession.beego.config_from_beego(
        "redis_sentinel",
        {
            "cookieName": "gosessionid",
            "gclifetime": 3600,
            "providerConfig": "s1:26379;s2:26379,100,pw,0,mymaster",
        },
    )
    assert (
        settings.url.get_secret_value()
        == "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/0?max_connections=100"
    )
    assert settings.cookie_name == "gosessionid"
    assert "pw@" not in repr(settings)
