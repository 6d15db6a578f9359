"""``couchbase://`` and ``couchbases://`` URLs, parsed into a :class:`CouchbaseTarget`.

    couchbase://user:password@host1[:port][,host2...]/<bucket>?scope=app&collection=sessions

No SDK import and no I/O here. Every error names the option and the problem, shows the URL
only with its password redacted, and never echoes an option's value.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qsl, unquote, urlsplit

from ormsession.config import parse_duration
from ormsession.errors import ConfigurationError
from ormsession.repositories.couchbase.cache import DEFAULT_CACHE_SIZE, MAX_CACHE_SIZE
from ormsession.repositories.couchbase.counters import DEFAULT_RESOLUTION, MAX_RESOLUTION
from ormsession.urls import host_problem, redact_url, unencoded_userinfo_hint

__all__ = ["DEFAULT_KV_TIMEOUT", "CouchbaseTarget", "display_url", "parse_couchbase_url"]

logger = logging.getLogger("ormsession")

SCHEMES = ("couchbase", "couchbases")
#: The SDK's own default for key-value operations.
DEFAULT_KV_TIMEOUT = 2.5
DEFAULT_SCOPE = DEFAULT_COLLECTION = "_default"
#: Every query option a URL may carry; anything else is a ConfigurationError (a typo such
#: as ``kv_timout`` must not be silently ignored).
OPTIONS = frozenset(
    {
        "scope",
        "collection",
        "username",
        "password",
        "kv_timeout",
        "connect_timeout",
        "key_prefix",
        "count_resolution",
        "cas_cache_size",
        "trust_store_path",
    }
)
#: Options of earlier versions, accepted with a warning and ignored.
OBSOLETE = {"index_shards": "count uses expiry-bucket counters now (see count_resolution)"}
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?")
# Couchbase's own rules: bucket names [A-Za-z0-9._%-] up to 100 characters; scope and
# collection names [A-Za-z0-9_%-] up to 251 (a leading '_' only for _default).
_BUCKET = re.compile(r"[A-Za-z0-9._%-]{1,100}")
_KEYSPACE = re.compile(r"[A-Za-z0-9%-][A-Za-z0-9_%-]{0,250}|_default")


@dataclass(frozen=True)
class CouchbaseTarget:
    """Where the sessions live and how to reach them (everything a URL can say)."""

    connection_string: str  # scheme and hosts only: what the SDK gets, never credentials
    bucket: str
    scope: str = DEFAULT_SCOPE
    collection: str = DEFAULT_COLLECTION
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    kv_timeout: timedelta = timedelta(seconds=DEFAULT_KV_TIMEOUT)
    connect_timeout: timedelta = timedelta(seconds=5)
    key_prefix: str = "ormsession:"
    count_resolution: int = DEFAULT_RESOLUTION
    cas_cache_size: int = DEFAULT_CACHE_SIZE
    trust_store_path: str | None = None
    display: str = ""  # the URL with its password redacted, for messages and reprs

    def __repr__(self) -> str:
        return f"CouchbaseTarget({self.display or self.connection_string!r})"


def parse_couchbase_url(
    url: str,
    *,
    key_prefix: str = "ormsession:",
    connect_timeout: float = 5.0,
    require_credentials: bool = True,
) -> CouchbaseTarget:
    """Parse ``url``; ``key_prefix`` and ``connect_timeout`` are the defaults (from
    settings) for options the URL does not set. ``require_credentials=False`` is for a
    URL that only names the bucket/collection for a ready client the app passed in."""
    try:
        return _parse(url, key_prefix, connect_timeout, require_credentials)
    except ConfigurationError as exc:
        # A '/', '?' or '#' in the password ends the authority early (see redis/urls.py).
        hint = unencoded_userinfo_hint(url)
        if not hint:
            raise
        raise ConfigurationError(f"{exc}{hint}") from None


def _parse(
    url: str, key_prefix: str, connect_timeout: float, require_credentials: bool
) -> CouchbaseTarget:
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigurationError("not a valid couchbase URL (it could not be parsed)") from None
    display = display_url(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(f"not a couchbase:// or couchbases:// URL: {display}")
    if parts.fragment:
        raise ConfigurationError(f"a couchbase URL has no #fragment: {display}")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    hosts = _hosts(hostlist, display)
    bucket = _bucket(parts.path, display)
    options = _query(parts.query, display)
    username, password = _credentials(userinfo, options, display, required=require_credentials)
    scope, collection = _keyspace(options, display)
    return CouchbaseTarget(
        connection_string=f"{scheme}://{','.join(hosts)}",
        bucket=bucket,
        scope=scope,
        collection=collection,
        username=username,
        password=password,
        kv_timeout=_seconds(options, "kv_timeout", DEFAULT_KV_TIMEOUT, display),
        connect_timeout=_seconds(options, "connect_timeout", connect_timeout, display),
        key_prefix=options.get("key_prefix", key_prefix),
        count_resolution=_integer(
            options, "count_resolution", DEFAULT_RESOLUTION, 1, MAX_RESOLUTION, display
        ),
        cas_cache_size=_integer(
            options, "cas_cache_size", DEFAULT_CACHE_SIZE, 0, MAX_CACHE_SIZE, display
        ),
        trust_store_path=options.get("trust_store_path") or None,
        display=display,
    )


def display_url(url: str) -> str:
    """``url`` with its passwords replaced by ``***``, for messages and reprs (see
    :func:`~ormsession.urls.redact_url`: a password with an unencoded '@', '/' or '#' is
    hidden whole)."""
    return redact_url(url)


def _hosts(hostlist: str, display: str) -> list[str]:
    hosts = [host.strip() for host in hostlist.split(",")]
    if not hostlist or not all(hosts):
        raise ConfigurationError(f"name at least one host: couchbase://host/bucket ({display})")
    for host in hosts:
        match = _HOST.fullmatch(host)
        if (
            match is None
            or host_problem(match[1]) is not None
            or (match[2] is not None and not 0 < int(match[2]) < 65536)
        ):
            raise ConfigurationError(f"not a host[:port] in the couchbase URL {display}")
    return hosts


def _bucket(path: str, display: str) -> str:
    bucket = unquote(path[1:] if path.startswith("/") else path)
    if not bucket:
        raise ConfigurationError(f"name the bucket: couchbase://host/<bucket> ({display})")
    if not _BUCKET.fullmatch(bucket):
        raise ConfigurationError(
            f"not a Couchbase bucket name in {display}: up to 100 of A-Z a-z 0-9 . _ % - "
            "(scope and collection go in ?scope=...&collection=...)"
        )
    return bucket


def _query(query: str, display: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in OBSOLETE:
            logger.warning(
                "couchbase URL option %s is obsolete and ignored: %s (%s)",
                name,
                OBSOLETE[name],
                display,
            )
            continue
        if name not in OPTIONS:
            raise ConfigurationError(
                f"unknown couchbase URL option {name!r} in {display}; valid options: "
                + ", ".join(sorted(OPTIONS))
            )
        if name in options:
            raise ConfigurationError(f"couchbase URL option {name!r} given twice in {display}")
        options[name] = value
    return options


def _credentials(
    userinfo: str, options: dict[str, str], display: str, *, required: bool
) -> tuple[str | None, str | None]:
    in_userinfo = bool(userinfo)
    in_query = "username" in options or "password" in options
    if in_userinfo and in_query:
        raise ConfigurationError(
            f"give the couchbase credentials once, in user:password@ or in ?username=&password= "
            f"({display})"
        )
    username: str | None
    secret: str | None
    if in_userinfo:
        user, has_password, password = userinfo.partition(":")
        username, secret = unquote(user), (unquote(password) if has_password else None)
    else:
        username, secret = options.get("username"), options.get("password")
    if (username or secret) and not (username and secret is not None):
        raise ConfigurationError(
            f"couchbase credentials need a username and a password ({display})"
        )
    if required and not username:
        raise ConfigurationError(
            f"Couchbase needs credentials: couchbase://user:password@host/bucket ({display})"
        )
    return username or None, secret


def _keyspace(options: dict[str, str], display: str) -> tuple[str, str]:
    scope = options.get("scope") or DEFAULT_SCOPE
    if "scope" in options and not options.get("collection"):
        raise ConfigurationError(
            f"a couchbase URL with ?scope= also needs &collection= ({display})"
        )
    collection = options.get("collection") or DEFAULT_COLLECTION
    for kind, name in (("scope", scope), ("collection", collection)):
        if not _KEYSPACE.fullmatch(name):
            raise ConfigurationError(f"not a Couchbase {kind} name in {display}")
    return scope, collection


def _seconds(options: dict[str, str], name: str, default: float, display: str) -> timedelta:
    """A timeout: seconds (``2.5``) or a duration with a unit (``500ms``, ``3s``, ``1m``)."""
    text = options.get(name)
    if text is None:
        return timedelta(seconds=default)
    text = text.strip().lower()
    value = (
        timedelta(milliseconds=float(text[:-2]))
        if text.endswith("ms") and _is_number(text[:-2])
        else parse_duration(text)
    )
    if (
        not isinstance(value, timedelta)
        or not math.isfinite(value.total_seconds())
        or (value <= timedelta(0))
    ):
        raise ConfigurationError(
            f"couchbase URL option {name} must be a positive number of seconds ({display})"
        )
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _integer(
    options: dict[str, str], name: str, default: int, low: int, high: int, display: str
) -> int:
    text = options.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ConfigurationError(f"couchbase URL option {name} must be {low}-{high} ({display})")
    return int(text)
