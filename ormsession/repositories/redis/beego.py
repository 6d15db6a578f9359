"""beego's ``redis``, ``redis_sentinel`` and ``redis_cluster`` provider strings as store URLs.

Old style (comma-separated; fields trimmed, empty fields take the default)::

    redis           addr,poolsize,password,dbnum,idle_timeout[,idle_check_frequency,max_retries]
    redis_sentinel  addr1;addr2,poolsize,password,dbnum,mastername[,idle_timeout,idle_check,retries]
    redis_cluster   addr1;addr2,poolsize,password[,dbnum,idle_timeout,idle_check,max_retries]

or JSON: ``{"save_path", "poolsize", "password", "db_num", "idle_timeout",
"idle_check_frequency", "max_retries"}`` plus ``"master_name"`` for Sentinel.

Fixed on the way (beego v2.3): the Sentinel old style read idle_timeout, idle_check and
max_retries one field early (from mastername on); the JSON form failed unless both
duration fields were given (they are optional here, as seconds or Go durations like
``"30s"``); unparsable numbers were silently replaced by defaults (an error here).

Mapping: poolsize -> ``max_connections`` (beego's default 100; 0 means redis-py's
default), idle_timeout -> ``health_check_interval`` (redis-py's way of not using a
connection the server has dropped while idle), max_retries -> ``retries``.
idle_check_frequency has no redis-py counterpart and is accepted and ignored. The
Cluster database number is ignored, as beego did (a cluster has only database 0).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from ormsession.errors import ConfigurationError

__all__ = ["parse_cluster_provider", "parse_redis_provider", "parse_sentinel_provider"]

#: beego's MaxPoolSize / DefaultPoolSize.
BEEGO_POOL_SIZE = 100
_GO_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class _Provider:
    """beego's provider fields, once read from either form."""

    addresses: list[str]
    poolsize: int = BEEGO_POOL_SIZE
    password: str = ""
    db: int = 0
    master_name: str = "mymaster"
    idle_timeout: float = 0.0
    max_retries: int = 0


def parse_redis_provider(provider_config: str) -> tuple[str, dict[str, Any]]:
    """beego ``redis`` -> ``redis://[:password@]host:port/db?...``."""
    provider = _read("redis", provider_config)
    if len(provider.addresses) != 1:
        raise ConfigurationError("beego redis: save_path must be one host:port")
    return _url("redis", provider, f"/{provider.db}"), {}


def parse_sentinel_provider(provider_config: str) -> tuple[str, dict[str, Any]]:
    """beego ``redis_sentinel`` -> ``redis+sentinel://[:password@]h1,h2/master/db?...``."""
    provider = _read("redis_sentinel", provider_config)
    path = f"/{quote(provider.master_name, safe='')}/{provider.db}"
    return _url("redis+sentinel", provider, path), {}


def parse_cluster_provider(provider_config: str) -> tuple[str, dict[str, Any]]:
    """beego ``redis_cluster`` -> ``redis+cluster://[:password@]h1,h2?...``."""
    return _url("redis+cluster", _read("redis_cluster", provider_config), ""), {}


# -- reading either form ----------------------------------------------------------------
def _read(kind: str, config: str) -> _Provider:
    text = config.strip()
    provider = _from_json(kind, text) if text.startswith("{") else _from_fields(kind, text)
    if not provider.addresses:
        # beego would have let go-redis fall back to localhost; ormsession never does.
        raise ConfigurationError(f"beego {kind}: no Redis address in the provider config")
    return provider


def _addresses(text: str) -> list[str]:
    return [part.strip() for part in text.split(";") if part.strip()]


def _from_fields(kind: str, text: str) -> _Provider:
    fields = [field.strip() for field in text.split(",")]
    provider = _Provider(_addresses(fields[0]))
    field = dict(enumerate(fields)).get
    provider.poolsize = _number(kind, "poolsize", field(1), BEEGO_POOL_SIZE)
    provider.password = field(2) or ""
    provider.db = _number(kind, "dbnum", field(3), 0)
    # Sentinel has the master name in the fifth field, pushing the rest one along.
    rest = 4
    if kind == "redis_sentinel":
        provider.master_name = field(4) or "mymaster"
        rest = 5
    provider.idle_timeout = _number(kind, "idle_timeout", field(rest), 0)
    _number(kind, "idle_check_frequency", field(rest + 1), 0)
    provider.max_retries = _number(kind, "max_retries", field(rest + 2), 0)
    return provider


def _from_json(kind: str, text: str) -> _Provider:
    try:
        values = json.loads(text)
    except ValueError:
        raise ConfigurationError(f"beego {kind}: the provider config is not valid JSON") from None
    if not isinstance(values, dict):
        raise ConfigurationError(f"beego {kind}: the JSON provider config must be an object")
    provider = _Provider(_addresses(str(values.get("save_path") or "")))
    provider.poolsize = _json_int(kind, values, "poolsize", BEEGO_POOL_SIZE)
    provider.password = str(values.get("password") or "").strip()
    provider.db = _json_int(kind, values, "db_num", 0)
    provider.master_name = str(values.get("master_name") or "").strip() or "mymaster"
    provider.idle_timeout = _duration(kind, "idle_timeout", values.get("idle_timeout"))
    _duration(kind, "idle_check_frequency", values.get("idle_check_frequency"))
    provider.max_retries = _json_int(kind, values, "max_retries", 0)
    return provider


def _number(kind: str, name: str, text: str | None, default: int) -> int:
    if not text:
        return default
    if not (text.isascii() and text.isdigit()):
        raise ConfigurationError(f"beego {kind}: {name} must be a whole number >= 0")
    return int(text)


def _json_int(kind: str, values: dict[str, Any], name: str, default: int) -> int:
    value = values.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigurationError(f"beego {kind}: {name} must be a whole number >= 0")
    return _number(kind, name, str(value).strip(), default)


def _duration(kind: str, name: str, value: Any) -> float:
    """Seconds from a number or a Go duration string ("30s", "1m30s"); absent is 0."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    text = str(value).strip()
    if text.isascii() and text.replace(".", "", 1).isdigit():
        return float(text)
    parts = _GO_DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ConfigurationError(f"beego {kind}: {name} must be seconds or a Go duration")
    return sum(float(number) * _GO_UNITS[unit] for number, unit in parts)


# -- writing the URL ----------------------------------------------------------------------
def _url(scheme: str, provider: _Provider, path: str) -> str:
    userinfo = f":{quote(provider.password, safe='')}@" if provider.password else ""
    query: dict[str, int] = {}
    if provider.poolsize > 0:
        query["max_connections"] = provider.poolsize
    if provider.idle_timeout > 0:
        query["health_check_interval"] = math.ceil(provider.idle_timeout)
    if provider.max_retries > 0:
        query["retries"] = provider.max_retries
    hosts = ",".join(provider.addresses)
    suffix = f"?{urlencode(query)}" if query else ""
    return f"{scheme}://{userinfo}{hosts}{path}{suffix}"
