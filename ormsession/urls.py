"""URL helpers that keep passwords out of every message, log line and repr."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["redact_url", "scheme_of", "scrub"]

_QUERY_SECRET = re.compile(r"(?i)([?&;][^=&;#]*(?:password|passwd|pwd|secret|token)=)[^&;#]*")


def redact_url(url: str) -> str:
    """``url`` with any password (in the userinfo or the query) replaced by ``***``.

    The userinfo ends at the *last* ``@`` of the authority, as URL parsers read it, so a
    password with an unencoded ``@`` is hidden whole.
    """
    scheme, sep, rest = url.partition("://")
    if sep:
        end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        userinfo, at, host = rest[:end].rpartition("@")
        if at and ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            url = f"{scheme}://{user}:***@{host}{rest[end:]}"
    return _QUERY_SECRET.sub(r"\1***", url)


def scheme_of(url: str) -> str:
    """The lowercased scheme of ``url`` (``""`` when it has none)."""
    return urlsplit(url).scheme.lower() if "://" in url else ""


def scrub(message: str, *secrets: str | None) -> str:
    """``message`` with each non-empty secret replaced by ``***`` (drivers sometimes echo
    connection parameters in their errors)."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message
