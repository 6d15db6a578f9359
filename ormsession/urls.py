"""URL helpers that keep passwords out of every message, log line and repr."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["redact_url", "scheme_of", "scrub"]

_USERINFO_PASSWORD = re.compile(r"(?<=://)([^/@:]*):([^/@]*)@")
_QUERY_SECRET = re.compile(r"(?i)([?&;][^=&;#]*(?:password|passwd|pwd|secret|token)=)[^&;#]*")


def redact_url(url: str) -> str:
    """``url`` with any password (in the userinfo or the query) replaced by ``***``."""
    url = _USERINFO_PASSWORD.sub(lambda m: f"{m.group(1)}:***@", url)
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
