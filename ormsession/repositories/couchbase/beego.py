"""beego's ``couchbase`` provider config, as a ``couchbase://`` URL.

beego accepts ``save_path,pool,bucket`` (e.g. ``http://host:8091/,default,sessions``) or
JSON ``{"save_path": ..., "pool": ..., "bucket": ...}``. Its ``save_path`` is the address
of the cluster's HTTP management port (8091; 18091 over TLS), which go-couchbase
bootstrapped from; SDK 4.x bootstraps from the key-value port instead (11210; 11207 over
TLS). So the management port is dropped and the SDK's default key-value port used:

    http://host:8091/,default,sessions   ->  couchbase://host/sessions
    https://host:18091/,default,sessions ->  couchbases://host/sessions

Any other port is refused with advice rather than guessed: nothing maps a custom
management port to its key-value port. ``pool`` is ignored: Couchbase Server has had
one pool ("default") since 2.0 and SDK 4.x has no such notion. Credentials in
``save_path`` (``http://user:password@host:8091/``) are kept; Couchbase 5+ requires them.
Unlike beego, every field is trimmed (beego kept the spaces after the commas).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlsplit

from ormsession.errors import ConfigurationError
from ormsession.repositories.couchbase.urls import display_url, parse_couchbase_url

__all__ = ["parse_couchbase_provider"]

#: save_path scheme -> (our scheme, the management port that means "default").
_SCHEMES = {"http": ("couchbase", 8091), "https": ("couchbases", 18091)}


def parse_couchbase_provider(provider_config: str) -> tuple[str, dict[str, Any]]:
    """beego's couchbase ``providerConfig`` as ``(couchbase URL, extra settings)``."""
    save_path, _pool, bucket = _fields(provider_config)
    if not bucket:
        raise ConfigurationError(
            "beego couchbase config names no bucket: expected save_path,pool,bucket"
        )
    url = f"{_base_url(save_path)}/{quote(bucket, safe='')}"
    parse_couchbase_url(url, require_credentials=False)  # the same checks as any URL
    return url, {}


def _fields(provider_config: str) -> tuple[str, str, str]:
    text = provider_config.strip()
    if text.startswith("{"):
        try:
            values = json.loads(text)
        except ValueError:
            raise ConfigurationError("beego couchbase config is not valid JSON") from None
        if not isinstance(values, dict):
            raise ConfigurationError("beego couchbase JSON config must be an object")
        fields = [str(values.get(name) or "").strip() for name in ("save_path", "pool", "bucket")]
        return fields[0], fields[1], fields[2]
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > 3:
        raise ConfigurationError(
            "beego couchbase config has more than three fields: expected save_path,pool,bucket"
        )
    parts += [""] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def _base_url(save_path: str) -> str:
    """``scheme://[userinfo@]host[:port]`` for the SDK from beego's save_path."""
    if not save_path:
        raise ConfigurationError("beego couchbase config has no save_path (e.g. http://host:8091/)")
    if "://" not in save_path:
        save_path = "http://" + save_path  # go-couchbase read a bare host:port as http
    try:
        parts = urlsplit(save_path)
        port = parts.port
    except ValueError:
        raise ConfigurationError(
            f"beego couchbase save_path is not a URL: {display_url(save_path)}"
        ) from None
    userinfo, at, _ = parts.netloc.rpartition("@")
    host = parts.hostname or ""
    if not host:
        raise ConfigurationError(f"beego couchbase save_path has no host: {display_url(save_path)}")
    host = f"[{host}]" if ":" in host else host
    scheme = parts.scheme.lower()
    if scheme in ("couchbase", "couchbases"):
        # Already a key-value address (accepted by go-couchbase too): keep the port.
        return f"{scheme}://{userinfo}{at}{host}{f':{port}' if port else ''}"
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"beego couchbase save_path must be http:// or https://: {display_url(save_path)}"
        )
    ours, management_port = _SCHEMES[scheme]
    if port not in (None, management_port):
        raise ConfigurationError(
            f"beego couchbase save_path {display_url(save_path)} uses port {port}, not the "
            f"default management port {management_port}: ormsession connects to the "
            f"key-value port instead; write the URL yourself: {ours}://user:password@{host}:"
            "<key-value port>/<bucket>"
        )
    return f"{ours}://{userinfo}{at}{host}"
