"""The Redis URL family, parsed and validated without I/O (and without importing redis-py).

::

    redis://[[user]:password@]host[:port][/db][?option=value...]
    rediss://...                                   (TLS)
    unix://[[user]:password@]/path/to/redis.sock[?db=N&...]
    redis+sentinel://[[user]:password@]host1[:port1],host2[:port2]/[service_name][/db][?...]
    redis+cluster://[[user]:password@]host1[:port1],host2[:port2][/][?...]

The userinfo is the data nodes' credentials; sentinels take theirs from the
``sentinel_username=`` / ``sentinel_password=`` options. Every option is listed in
:data:`OPTIONS` (and in ``docs/stores/redis.md``); an unknown one is an error, never ignored.
Error messages name the URL with its passwords redacted and never echo an option's value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from ormsession.errors import ConfigurationError
from ormsession.repositories.buckets import DEFAULT_RESOLUTION, MAX_RESOLUTION
from ormsession.urls import host_problem, redact_url, unencoded_userinfo_hint

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SENTINEL_PORT",
    "DEFAULT_SERVICE_NAME",
    "OPTIONS",
    "Address",
    "Mode",
    "RedisUrl",
    "parse_redis_url",
]

Mode = Literal["standalone", "sentinel", "cluster"]
Address = tuple[str, int]

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_SERVICE_NAME = "mymaster"

_MODES: dict[str, Mode] = {
    "redis": "standalone",
    "rediss": "standalone",
    "unix": "standalone",
    "redis+sentinel": "sentinel",
    "redis+cluster": "cluster",
}
_HOSTNAME = re.compile(r"[A-Za-z0-9._-]+")
_IPV6 = re.compile(r"\[([^\]]+)\](?::(\d+))?")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """A parsed store URL. Passwords are kept out of ``repr``; ``redacted`` is for messages."""

    mode: Mode
    redacted: str
    hosts: tuple[Address, ...] = ()
    unix_path: str | None = None
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    service_name: str = DEFAULT_SERVICE_NAME
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    # -- query options (None: take the default from the settings / redis-py) ------------
    max_connections: int | None = None
    socket_timeout: float | None = None
    socket_connect_timeout: float | None = None
    key_prefix: str | None = None
    wait_replicas: int = 0
    wait_timeout_ms: int | None = None
    count_resolution: int = DEFAULT_RESOLUTION
    retries: int = 1
    health_check_interval: int = 0
    client_name: str | None = None
    ssl_cert_reqs: str | None = None
    ssl_ca_certs: str | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        """The passwords in this URL, for scrubbing driver messages."""
        return tuple(s for s in (self.password, self.sentinel_password) if s)


# -- option parsers: text -> value, raising ValueError with what was expected ---------------
def _int(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise ValueError(f"an integer >= {minimum}")
        return value

    return parse


def _resolution(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_RESOLUTION:
        raise ValueError(f"an integer from 1 to {MAX_RESOLUTION}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError("a positive number of seconds")
    return value


def _bool(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError("true or false")


def _text(text: str) -> str:
    if not text:
        raise ValueError("a non-empty value")
    return text


def _cert_reqs(text: str) -> str:
    if text.lower() not in {"none", "optional", "required"}:
        raise ValueError("none, optional or required")
    return text.lower()


_ALL: frozenset[Mode] = frozenset({"standalone", "sentinel", "cluster"})
_NOT_CLUSTER: frozenset[Mode] = frozenset({"standalone", "sentinel"})


@dataclass(frozen=True, slots=True)
class _Option:
    parse: Callable[[str], Any]
    modes: frozenset[Mode]
    expected: str
    secret: bool = False


#: Every query option: name -> (parser, where it applies, what it must be).
OPTIONS: dict[str, _Option] = {
    "db": _Option(_int(0), _NOT_CLUSTER, "a database number >= 0"),
    "max_connections": _Option(_int(1), _ALL, "a positive integer"),
    "socket_timeout": _Option(_seconds, _ALL, "a positive number of seconds"),
    "socket_connect_timeout": _Option(_seconds, _ALL, "a positive number of seconds"),
    "key_prefix": _Option(_text, _ALL, "a non-empty key prefix"),
    "wait_replicas": _Option(_int(0), _NOT_CLUSTER, "an integer >= 0"),
    "wait_timeout_ms": _Option(_int(1), _NOT_CLUSTER, "a positive number of milliseconds"),
    "count_resolution": _Option(_resolution, _ALL, f"an integer from 1 to {MAX_RESOLUTION}"),
    "retries": _Option(_int(0), _ALL, "an integer >= 0"),
    "health_check_interval": _Option(_int(0), _ALL, "an integer number of seconds >= 0"),
    "client_name": _Option(_text, _ALL, "a non-empty name"),
    "ssl": _Option(_bool, frozenset({"sentinel", "cluster"}), "true or false"),
    "ssl_cert_reqs": _Option(_cert_reqs, _ALL, "none, optional or required"),
    "ssl_ca_certs": _Option(_text, _ALL, "a file path"),
    "sentinel_username": _Option(_text, frozenset({"sentinel"}), "a user name"),
    "sentinel_password": _Option(_text, frozenset({"sentinel"}), "a password", secret=True),
}


def parse_redis_url(url: str) -> RedisUrl:
    """Parse and validate ``url``; raise :class:`ConfigurationError` naming what is wrong."""
    try:
        return _parse(url)
    except ConfigurationError as exc:
        # A '/', '?' or '#' in the password ends the authority early: the error is then
        # about a host or port the URL does not seem to have, unless it says why.
        hint = unencoded_userinfo_hint(url)
        if not hint:
            raise
        raise ConfigurationError(f"{exc}{hint}") from None


def _parse(url: str) -> RedisUrl:
    redacted = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _error(redacted, "it is not a valid URL") from None
    scheme = parts.scheme.lower()
    mode = _MODES.get(scheme)
    if mode is None:
        raise _error(redacted, "the scheme must be one of " + ", ".join(sorted(_MODES)))
    if parts.fragment:
        raise _error(redacted, "a URL fragment (#...) is not allowed")
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    username, password = _credentials(userinfo)
    target = RedisUrl(
        mode=mode, redacted=redacted, username=username, password=password, tls=scheme == "rediss"
    )
    if scheme == "unix":
        target = _unix(target, hostinfo, parts.path)
    elif mode == "standalone":
        target = _standalone(target, hostinfo, parts.path)
    elif mode == "sentinel":
        target = _sentinel(target, hostinfo, parts.path)
    else:
        target = _cluster(target, hostinfo, parts.path)
    target = _apply_options(target, parts.query)
    if (target.ssl_cert_reqs or target.ssl_ca_certs) and not target.tls:
        raise _error(redacted, "ssl_cert_reqs/ssl_ca_certs need TLS (rediss:// or ssl=true)")
    return target


def _error(redacted: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"invalid Redis URL {redacted!r}: {problem}")


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, _, password = userinfo.partition(":")
    return unquote(user) or None, unquote(password) or None


def _standalone(target: RedisUrl, hostinfo: str, path: str) -> RedisUrl:
    hosts = _hosts(target, hostinfo, DEFAULT_PORT)
    if len(hosts) != 1:
        raise _error(
            target.redacted,
            "redis:// takes one host (use redis+sentinel:// or redis+cluster:// for several)",
        )
    return replace(target, hosts=hosts, db=_db_from_path(target, path.strip("/")))


def _unix(target: RedisUrl, hostinfo: str, path: str) -> RedisUrl:
    if hostinfo:
        raise _error(target.redacted, "unix:// takes a socket path, not a host (unix:///path)")
    if not path or path == "/":
        raise _error(target.redacted, "unix:// needs the socket's path (unix:///path/to.sock)")
    return replace(target, unix_path=unquote(path))


def _sentinel(target: RedisUrl, hostinfo: str, path: str) -> RedisUrl:
    hosts = _hosts(target, hostinfo, DEFAULT_SENTINEL_PORT)
    segments = path.strip("/").split("/") if path.strip("/") else []
    if len(segments) > 2:
        raise _error(target.redacted, "the path must be /<service_name>[/<db>]")
    service = unquote(segments[0]) if segments else DEFAULT_SERVICE_NAME
    db = _db_from_path(target, segments[1]) if len(segments) == 2 else 0
    return replace(target, hosts=hosts, service_name=service or DEFAULT_SERVICE_NAME, db=db)


def _cluster(target: RedisUrl, hostinfo: str, path: str) -> RedisUrl:
    hosts = _hosts(target, hostinfo, DEFAULT_PORT)
    if path.strip("/") not in ("", "0"):
        raise _error(target.redacted, "Redis Cluster has only database 0: drop the path")
    return replace(target, hosts=hosts)


def _db_from_path(target: RedisUrl, text: str) -> int:
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()):
        raise _error(target.redacted, "the database must be a number >= 0")
    return int(text)


def _hosts(target: RedisUrl, hostinfo: str, default_port: int) -> tuple[Address, ...]:
    if not hostinfo:
        # Never fall back to localhost silently: a URL without a host is a mistake.
        raise _error(target.redacted, "no host given")
    return tuple(_address(target, part.strip(), default_port) for part in hostinfo.split(","))


def _address(target: RedisUrl, text: str, default_port: int) -> Address:
    match = _IPV6.fullmatch(text)
    if match is not None:
        host, port_text = match[1], match[2]
        problem = host_problem(f"[{host}]")
    else:
        host, _, port_text = text.partition(":")
        problem = (
            host_problem(host)
            if _HOSTNAME.fullmatch(host)
            else "one is empty or holds a character no host name has"
        )
    if problem:
        raise _error(target.redacted, f"each host must be name[:port] or [ipv6][:port] ({problem})")
    if not port_text:
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise _error(target.redacted, "a port must be a number from 1 to 65535")
    return host, int(port_text)


def _apply_options(target: RedisUrl, query: str) -> RedisUrl:
    values: dict[str, Any] = {}
    for name, text in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        option = OPTIONS.get(name)
        if option is None:
            raise _error(
                target.redacted, f"unknown option {name!r}; valid options: " + ", ".join(OPTIONS)
            )
        if target.mode not in option.modes:
            hint = " (use rediss:// for TLS)" if name == "ssl" else ""
            raise _error(
                target.redacted, f"option {name} does not apply to {target.mode} URLs{hint}"
            )
        if name in values:
            raise _error(target.redacted, f"option {name} is given twice")
        try:
            values[name] = option.parse(text.strip())
        except ValueError:
            raise _error(target.redacted, f"option {name} must be {option.expected}") from None
    if "db" in values and target.db not in (0, values["db"]):
        raise _error(target.redacted, "the database is given both in the path and as db=")
    if "ssl" in values:
        values["tls"] = values.pop("ssl")
    return replace(target, **values)
