"""Coming from beego: ManagerConfig keys and provider strings."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy.engine import make_url

from ormsession import beego
from ormsession.errors import ConfigurationError


def test_mysql_dsn() -> None:
    url, options = beego.parse_mysql_dsn(
        " root:p@ss:w@tcp(127.0.0.1:3307)/app?charset=utf8mb4,utf8&parseTime=true&timeout=1m30s "
    )
    parsed = make_url(url)
    assert (
        parsed.drivername,
        parsed.username,
        parsed.password,
        parsed.host,
        parsed.port,
        parsed.database,
    ) == ("mysql+pymysql", "root", "p@ss:w", "127.0.0.1", 3307, "app")
    assert parsed.query == {"charset": "utf8mb4"}
    assert options == {"store_timeout": 90.0}
    unix = make_url(beego.parse_mysql_dsn("u@unix(/run/mysqld.sock)/db")[0])
    assert unix.query == {"unix_socket": "/run/mysqld.sock"} and unix.host is None
    assert make_url(beego.parse_mysql_dsn("/db")[0]).host == "127.0.0.1"
    with pytest.raises(ConfigurationError):
        beego.parse_mysql_dsn("not a dsn")


def test_postgresql_conninfo() -> None:
    url, _ = beego.parse_postgresql_conninfo(
        "user=app password='it\\'s a secret' host=db.internal port=6432 dbname=web "
        "sslmode=require connect_timeout=3"
    )
    parsed = make_url(url)
    assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == (
        "app",
        "it's a secret",
        "db.internal",
        6432,
        "web",
    )
    assert parsed.query == {"sslmode": "require", "connect_timeout": "3"}
    url, _ = beego.parse_postgresql_conninfo("postgres://a:b@h:5432/d?sslmode=disable")
    assert url == "postgresql+psycopg2://a:b@h:5432/d?sslmode=disable"
    with pytest.raises(ConfigurationError):
        beego.parse_postgresql_conninfo("user=app =broken")


def test_manager_config_maps_to_settings() -> None:
    config = {
        "cookieName": "gosessionid",
        "enableSetCookie": False,
        "gclifetime": 3600,
        "maxLifetime": 0,
        "disableHTTPOnly": True,
        "secure": True,
        "cookieLifeTime": 7200,
        "providerConfig": "root@tcp(127.0.0.1:3306)/test",
        "domain": "example.com",
        "sessionIDLength": 16,
        "EnableSidInHTTPHeader": True,
        "SessionNameInHTTPHeader": "X-Session",
        "EnableSidInURLQuery": True,
        "sessionIDPrefix": "app-",
        "cookieSameSite": 3,
    }
    original = dict(config)
    settings = beego.config_from_beego("mysql", json.dumps(config))
    assert config == original, "beego mutated the caller's config; ormsession must not"
    assert settings.url.get_secret_value() == "mysql+pymysql://root@127.0.0.1:3306/test"
    assert settings.cookie_name == "gosessionid" and settings.set_cookie is False
    assert settings.idle_timeout == dt.timedelta(hours=1), "maxLifetime defaults to gclifetime"
    assert settings.cookie_httponly is False and settings.cookie_secure is None
    assert settings.cookie_lifetime == dt.timedelta(hours=2)
    assert settings.cookie_domain == "example.com"
    assert settings.id_bytes == 32, "never below 256 bits, whatever beego asked"
    assert settings.id_header == "X-Session" and settings.id_query_param == "gosessionid"
    assert settings.id_prefix == "app-" and settings.cookie_samesite == "strict"


def test_unknown_providers_and_values_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="supported"):
        beego.config_from_beego("ledis", {})
    with pytest.raises(ConfigurationError, match="cookieSameSite"):
        beego.config_from_beego("memory", {"cookieSameSite": 9})


def test_configure_from_beego_runs_on_the_store(request: pytest.FixtureRequest) -> None:
    from tests.support.stores import STORE_TARGETS

    STORE_TARGETS["postgresql"](request)
    url = make_url(request.getfixturevalue("postgresql_url"))
    conninfo = f"user={url.username} host={url.host} port={url.port} dbname={url.database}"
    with beego.configure(
        "postgresql", {"providerConfig": conninfo, "cookieName": "sid", "gclifetime": 60}
    ) as manager:
        session = manager.open(None)
        session["from"] = "beego"
        header = manager.save(session)
        assert header is not None and header.startswith("sid=")
        assert manager.open(session.id)["from"] == "beego"
        assert manager.expiry.idle_timeout == dt.timedelta(seconds=60)


@pytest.mark.parametrize(
    "key", ["providerConfig", "ProviderConfig", "providerconfig", "PROVIDERCONFIG"]
)
def test_keys_match_case_insensitively_as_in_go(key: str) -> None:
    config = beego.config_from_beego(
        "postgresql",
        json.dumps(
            {key: "user=app host=db.internal dbname=web", "GcLifeTime": 60, "COOKIENAME": "x"}
        ),
    )
    assert config.url.get_secret_value() == "postgresql+psycopg2://app@db.internal/web"
    assert config.idle_timeout == dt.timedelta(seconds=60) and config.cookie_name == "x"


def test_a_later_key_wins_whatever_its_case() -> None:
    text = '{"cookieName": "first", "CookieName": "second"}'
    assert beego.config_from_beego("memory", text).cookie_name == "second"


def test_a_capitalised_provider_config_reaches_the_real_store(
    request: pytest.FixtureRequest,
) -> None:
    from tests.support.stores import STORE_TARGETS

    STORE_TARGETS["postgresql"](request)
    url = make_url(request.getfixturevalue("postgresql_url"))
    conninfo = f"user={url.username} host={url.host} port={url.port} dbname={url.database}"
    with beego.configure("postgresql", {"ProviderConfig": conninfo}) as manager:
        session = manager.open(None)
        session["n"] = 1
        assert manager.save(session) is not None
        assert make_url(manager.config.url.get_secret_value()).database == url.database


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"gclifetime": "1h"}, "beego gclifetime must be a whole number"),
        ({"maxLifetime": 1.5}, "beego maxLifetime must be a whole number"),
        ({"cookieLifeTime": [1]}, "beego cookieLifeTime must be a whole number"),
        ({"enableSetCookie": "false"}, "beego enableSetCookie must be true or false"),
        ({"Secure": 1}, "beego secure must be true or false"),
        ({"cookieName": 5}, "beego cookieName must be a string"),
        ({"cookieName": "bad;name"}, "beego cookieName (ormsession's cookie_name)"),
        ({"sessionIDPrefix": "has space"}, "beego sessionIDPrefix (ormsession's id_prefix)"),
        ({"domain": 7}, "beego domain must be a string"),
        ({"cookieSameSite": 9}, "beego cookieSameSite must be 0-4"),
    ],
)
def test_bad_values_name_their_beego_key(config: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        beego.config_from_beego("memory", config)
    assert str(caught.value).startswith(named)


def test_null_values_are_go_zero_values() -> None:
    config = beego.config_from_beego(
        "memory", '{"cookieName": null, "gclifetime": null, "providerConfig": null}'
    )
    assert config.cookie_name == "session" and config.url.get_secret_value() == "memory://"
