"""Coming from beego: its ManagerConfig and provider strings, read as an ormsession configuration.

    import ormsession.beego
    manager = ormsession.beego.configure("mysql", {
        "cookieName": "gosessionid", "gclifetime": 3600, "enableSetCookie": True,
        "providerConfig": "root:pw@tcp(127.0.0.1:3306)/app?charset=utf8",
    })

Each provider name maps to a parser that turns beego's provider string into a store URL
(plus options). Parsing fixes beego's own bugs: fields are trimmed, none is read one
position off, and a missing optional field takes its documented default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

from sqlalchemy.engine import URL

from ormsession.config import Config
from ormsession.errors import ConfigurationError
from ormsession.manager import SessionManager

__all__ = ["config_from_beego", "configure", "parse_mysql_dsn", "parse_postgresql_conninfo"]

#: What a provider parser returns: the store URL and extra options.
ParsedProvider = tuple[str, dict[str, Any]]

# Go's net/http SameSite values: 1 default, 2 Lax, 3 Strict, 4 None.
_SAMESITE = {0: "lax", 1: "lax", 2: "lax", 3: "strict", 4: "none"}
_MYSQL_DSN = re.compile(
    r"^(?:(?P<user>[^:@]*)(?::(?P<password>.*))?@)?"
    r"(?:(?P<net>\w+)(?:\((?P<addr>[^)]*)\))?)?"
    r"/(?P<db>[^?]*)(?:\?(?P<params>.*))?$"
)
_CONNINFO_PAIR = re.compile(r"\s*(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)")


def _go_duration_seconds(value: str) -> float:
    """Go's time.Duration text ("5s", "1m30s", "500ms") in seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"([\d.]+)(ns|us|µs|ms|s|m|h)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ConfigurationError(f"not a Go duration: {value!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


def _port(text: str) -> int | None:
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ConfigurationError("a port in the beego provider config must be 1-65535")
    return int(text)


#: beego's ManagerConfig fields, by their JSON names, and the JSON type each must have.
MANAGER_CONFIG_KEYS: dict[str, type] = {
    "cookieName": str,
    "enableSetCookie": bool,
    "gclifetime": int,
    "maxLifetime": int,
    "disableHTTPOnly": bool,
    "secure": bool,
    "cookieLifeTime": int,
    "providerConfig": str,
    "domain": str,
    "sessionIDLength": int,
    "EnableSidInHTTPHeader": bool,
    "SessionNameInHTTPHeader": str,
    "EnableSidInURLQuery": bool,
    "sessionIDPrefix": str,
    "cookieSameSite": int,
}
_KEY_BY_FOLDED = {name.casefold(): name for name in MANAGER_CONFIG_KEYS}
_JSON_TYPE = {str: "a string", bool: "true or false", int: "a whole number"}


def _whole(values: Mapping[str, Any], name: str) -> int:
    """An integer field of beego's ManagerConfig (absent, null or "" are 0)."""
    value = values.get(name) or 0
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigurationError(f"beego {name} must be a whole number (of seconds for times)")
    try:
        return int(value)
    except ValueError:
        # "1h": beego reads these as JSON numbers, so a duration string never worked there.
        raise ConfigurationError(
            f"beego {name} must be a whole number (of seconds for times), not a string"
        ) from None


def _checked_value(name: str, value: Any) -> Any:
    """``value`` if Go's encoding/json would accept it for the field (null: its zero)."""
    expected = MANAGER_CONFIG_KEYS[name]
    if value is None or expected is int:  # whole numbers are checked where they are read
        return value
    if not isinstance(value, expected):
        raise ConfigurationError(f"beego {name} must be {_JSON_TYPE[expected]}")
    return value


def parse_mysql_dsn(dsn: str) -> ParsedProvider:
    """go-sql-driver/mysql DSN (``user:pw@tcp(host:3306)/db?charset=utf8``) as a URL."""
    match = _MYSQL_DSN.match(dsn.strip())
    if match is None:
        raise ConfigurationError("not a go-sql-driver/mysql DSN: expected user:pw@tcp(host)/db")
    net, addr = match["net"] or "tcp", match["addr"] or ""
    query: dict[str, str] = {}
    options: dict[str, Any] = {}
    for pair in filter(None, (match["params"] or "").split("&")):
        name, _, value = pair.partition("=")
        if name == "charset":
            query["charset"] = value.split(",")[0]
        elif name == "timeout":
            # go-sql-driver's dial timeout: the closest ormsession has is the deadline of
            # each store operation, which bounds connecting too.
            options["store_timeout"] = _go_duration_seconds(value)
    host: str | None = None
    port: int | None = None
    if net == "unix":
        query["unix_socket"] = addr
    elif addr:
        host, _, port_text = addr.rpartition(":") if ":" in addr else (addr, "", "")
        port = _port(port_text)
    else:
        host = "127.0.0.1"
    url = URL.create(
        "mysql+pymysql",
        username=match["user"] or None,
        password=match["password"] or None,
        host=host,
        port=port,
        database=match["db"] or None,
        query=query,
    )
    return url.render_as_string(hide_password=False), options


def parse_postgresql_conninfo(conninfo: str) -> ParsedProvider:
    """lib/pq conninfo (``postgres://...`` or ``user=a password=b dbname=c``) as a URL."""
    text = conninfo.strip()
    if text.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg2://" + text.split("://", 1)[1], {}
    values: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _CONNINFO_PAIR.match(text, position)
        if match is None or match.end() == position:
            raise ConfigurationError("not a libpq conninfo string: expected key=value pairs")
        raw = match[2]
        if raw.startswith("'"):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        values[match[1]] = raw
        position = match.end()
    query: dict[str, str] = {
        key: values[key] for key in ("sslmode", "connect_timeout") if key in values
    }
    url = URL.create(
        "postgresql+psycopg2",
        username=values.get("user"),
        password=values.get("password"),
        host=values.get("host", "127.0.0.1"),
        port=_port(values.get("port", "")),
        database=values.get("dbname"),
        query=query,
    )
    return url.render_as_string(hide_password=False), {}


#: beego provider name -> parser ("module:function" for stores with optional drivers).
PROVIDERS: dict[str, Callable[[str], ParsedProvider] | str] = {
    "mysql": parse_mysql_dsn,
    "postgresql": parse_postgresql_conninfo,
    "redis": "ormsession.repositories.redis.beego:parse_redis_provider",
    "redis_sentinel": "ormsession.repositories.redis.beego:parse_sentinel_provider",
    "redis_cluster": "ormsession.repositories.redis.beego:parse_cluster_provider",
    "couchbase": "ormsession.repositories.couchbase.beego:parse_couchbase_provider",
    "memory": lambda _config: ("memory://", {}),
}


def _parser(provider: str) -> Callable[[str], ParsedProvider]:
    entry = PROVIDERS.get(provider)
    if entry is None:
        raise ConfigurationError(
            f"beego provider {provider!r} has no ormsession store; supported: "
            + ", ".join(sorted(PROVIDERS))
        )
    if isinstance(entry, str):
        module, _, function = entry.partition(":")
        parser: Callable[[str], ParsedProvider] = getattr(import_module(module), function)
        return parser
    return entry


#: ormsession option -> the beego key it is read from (for errors about its value).
_SOURCES = {
    "idle_timeout": "maxLifetime",
    "cookie_name": "cookieName",
    "cookie_lifetime": "cookieLifeTime",
    "cookie_domain": "domain",
    "id_header": "SessionNameInHTTPHeader",
    "id_query_param": "cookieName",
    "id_prefix": "sessionIDPrefix",
}


def config_from_beego(provider: str, config: str | Mapping[str, Any], **overrides: Any) -> Config:
    """The ormsession configuration equivalent to beego's ``NewManager(provider, config)``.

    ``config`` is beego's ManagerConfig as JSON text or a mapping with its JSON keys, in
    any case (Go's JSON decoding matches them case-insensitively). A value of the wrong
    type raises :class:`ConfigurationError` naming its key. The caller's mapping is never
    modified (beego mutated it).
    """
    values = _manager_config(config)
    options: dict[str, Any] = {}
    url, store_options = _parser(provider)(values.get("providerConfig") or "")
    options.update(store_options)
    options["url"] = url
    gc_lifetime = _whole(values, "gclifetime")
    max_lifetime = _whole(values, "maxLifetime") or gc_lifetime
    if max_lifetime > 0:
        options["idle_timeout"] = max_lifetime
    if values.get("cookieName") is not None:
        options["cookie_name"] = values["cookieName"]
    if values.get("enableSetCookie") is not None:
        options["set_cookie"] = bool(values["enableSetCookie"])
    if values.get("disableHTTPOnly"):
        options["cookie_httponly"] = False
    # beego's Secure means "Secure when the request is TLS": ormsession's automatic mode.
    options["cookie_secure"] = None if values.get("secure") else False
    if _whole(values, "cookieLifeTime") > 0:
        options["cookie_lifetime"] = _whole(values, "cookieLifeTime")
    if values.get("domain"):
        options["cookie_domain"] = values["domain"]
    if values.get("sessionIDLength"):
        # beego's default is 16 bytes; ormsession never goes below 256 bits.
        options["id_bytes"] = max(32, _whole(values, "sessionIDLength"))
    if values.get("EnableSidInHTTPHeader"):
        options["id_header"] = values.get("SessionNameInHTTPHeader") or "Sessionid"
    if values.get("EnableSidInURLQuery"):
        options["id_query_param"] = values.get("cookieName") or "session"
    if values.get("sessionIDPrefix"):
        options["id_prefix"] = values["sessionIDPrefix"]
    if values.get("cookieSameSite") is not None:
        samesite = _SAMESITE.get(_whole(values, "cookieSameSite"))
        if samesite is None:
            raise ConfigurationError("beego cookieSameSite must be 0-4 (Go's http.SameSite)")
        options["cookie_samesite"] = samesite
    _with_beego_names(options, _SOURCES)
    from ormsession.settings import load_config

    return load_config(**(options | overrides))


def _manager_config(config: str | Mapping[str, Any]) -> dict[str, Any]:
    """beego's ManagerConfig by its fields' JSON names, read as Go's encoding/json does:
    a key matches a field case-insensitively ("ProviderConfig", "providerconfig"), a later
    key wins over an earlier one for the same field, other keys are ignored."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            raise ConfigurationError("beego's ManagerConfig is not valid JSON") from None
    if not isinstance(config, Mapping):
        raise ConfigurationError("beego's ManagerConfig must be a JSON object")
    values: dict[str, Any] = {}
    for key, value in config.items():
        name = _KEY_BY_FOLDED.get(str(key).casefold())
        if name is not None:
            values[name] = _checked_value(name, value)
    return values


def _with_beego_names(options: dict[str, Any], sources: dict[str, str]) -> None:
    """Check each option taken from a beego key alone, so that a bad value is reported
    under the beego key the user wrote (Config's own error names ormsession's option)."""
    for option, key in sources.items():
        if option in options:
            try:
                Config(**{option: options[option]})
            except ConfigurationError as exc:
                raise ConfigurationError(f"beego {key} (ormsession's {option}): {exc}") from None


def configure(provider: str, config: str | Mapping[str, Any], **overrides: Any) -> SessionManager:
    """A :class:`SessionManager` from a beego provider name and ManagerConfig."""
    from ormsession.configure import configure as configure_manager

    return configure_manager(config=config_from_beego(provider, config, **overrides))
