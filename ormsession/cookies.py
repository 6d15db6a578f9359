"""Building ``Set-Cookie`` values and reading ``Cookie`` headers (no I/O, no framework)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import format_datetime
from typing import Literal
from urllib.parse import quote

from ormsession.errors import ConfigurationError
from ormsession.expiry import LONGEST_DURATION, from_us

__all__ = [
    "MAX_COOKIE_IDS",
    "CookieOptions",
    "CookieStyle",
    "SameSite",
    "cookie_ids",
    "cookie_value",
    "parse_cookie_header",
]

SameSite = Literal["lax", "strict", "none"]
#: How a ``Set-Cookie`` value is laid out: "standard" (Werkzeug's and most servers'
#: ``Path=/; HttpOnly; SameSite=Lax``), or "starlette" (Starlette's own SessionMiddleware's
#: lowercase ``path=/; Max-Age=N; httponly; samesite=lax``, for apps and tests that look
#: at the header as Starlette writes it). Browsers read both alike.
CookieStyle = Literal["standard", "starlette"]
_EPOCH_EXPIRES = "Thu, 01 Jan 1970 00:00:00 GMT"
# RFC 6265 cookie-name is an RFC 7230 token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: A host name; an underscore too (internal names have them, and browsers take them).
_DOMAIN = re.compile(r"\.?[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_UNSAFE_IN_PATH = re.compile(r"[;\x00-\x1f\x7f]")
#: What a path keeps as it is: Werkzeug's set (RFC 3986 path characters and '%').
_PATH_SAFE = "%!$&'()*+,/:=@"
#: How many well-formed ids of the session cookie's name a request may try, the first
#: included, until one names a stored session (each costs a store read).
MAX_COOKIE_IDS = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class CookieOptions:
    """How the session cookie is written (built by :class:`~ormsession.Config` from its
    ``cookie_*`` options, which give the defaults).

    ``secure=None`` means "Secure when the request came over https" (the integrations tell
    the manager; behind a TLS-terminating proxy they can trust ``X-Forwarded-Proto``).
    ``max_age=None`` makes a browser-session cookie (no Max-Age, no Expires), as beego does
    when no cookie lifetime is set; zero or negative (Starlette's ``max_age<=0``) a cookie
    already expired when sent, so the session it names is never stored. ``host_prefix``
    names the cookie ``__Host-<name>``, which browsers accept only with Secure, ``Path=/``
    and no Domain, so those are enforced. ``partitioned`` (CHIPS: a cookie kept per
    top-level site) implies Secure, as browsers require. A leading dot of ``domain`` is
    dropped: browsers ignore it, and Werkzeug drops it too (the "starlette" style keeps
    it, as Starlette writes the domain as given).
    """

    name: str
    path: str
    domain: str | None
    secure: bool | None
    httponly: bool
    samesite: SameSite | None
    max_age: timedelta | None
    host_prefix: bool
    partitioned: bool = False
    style: CookieStyle = "standard"
    #: The name on the wire, with the ``__Host-`` prefix when enabled (worked out once:
    #: every request looks it up).
    cookie_name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.name):
            raise ConfigurationError(f"cookie name {self.name!r} is not a valid token")
        if not self.path.startswith("/"):
            raise ConfigurationError(f"cookie path {self.path!r} must start with '/'")
        if _UNSAFE_IN_PATH.search(self.path):
            raise ConfigurationError(
                f"cookie path {self.path!r} holds a ';' or a control character, which would "
                "end the attribute (a mistake, or an injected attribute or header)"
            )
        # A space or a non-ASCII character is written percent-encoded, as Werkzeug writes it
        # (an APPLICATION_ROOT of "/my app"): browsers match it against the encoded URL path.
        object.__setattr__(self, "path", quote(self.path, safe=_PATH_SAFE))
        if self.domain is not None:
            if not _DOMAIN.fullmatch(self.domain):
                raise ConfigurationError(f"cookie domain {self.domain!r} is not a host name")
            if self.style == "standard":
                object.__setattr__(self, "domain", self.domain.removeprefix("."))
        if self.max_age is not None and self.max_age > LONGEST_DURATION:
            raise ConfigurationError(
                f"cookie lifetime {self.max_age} is longer than the {LONGEST_DURATION.days} days "
                "(1000 years) a cookie's Expires date can be written for"
            )
        if self.samesite not in ("lax", "strict", "none", None):
            raise ConfigurationError("cookie samesite must be 'lax', 'strict', 'none' or None")
        if self.style not in ("standard", "starlette"):
            raise ConfigurationError("cookie style must be 'standard' or 'starlette'")
        if self.host_prefix:
            if self.secure is False:
                raise ConfigurationError("a __Host- cookie must be Secure")
            if self.domain is not None or self.path != "/":
                raise ConfigurationError("a __Host- cookie must have Path=/ and no Domain")
        if self.samesite == "none" and self.secure is False:
            raise ConfigurationError("browsers reject SameSite=None without Secure")
        if self.partitioned and self.secure is False:
            raise ConfigurationError("a partitioned cookie must be Secure")
        wire_name = "__Host-" + self.name if self.host_prefix else self.name
        object.__setattr__(self, "cookie_name", wire_name)

    @property
    def expired_at_once(self) -> bool:
        """Whether the cookie is already expired when sent (``max_age`` zero or negative):
        the session it names is never stored."""
        return self.max_age is not None and self.max_age <= timedelta(0)

    def is_secure(self, https: bool) -> bool:
        if self.host_prefix or self.partitioned or self.samesite == "none":
            return True
        return https if self.secure is None else self.secure

    def set_cookie(self, value: str, *, https: bool, now_us: int) -> str:
        """The ``Set-Cookie`` header value carrying the session id (``now_us``: the time
        of the response, in µs, for ``Expires``)."""
        lifetime: list[str] = []
        if self.max_age is not None:
            seconds = int(self.max_age.total_seconds())
            lifetime.append(f"Max-Age={seconds}")
            if self.style == "standard":
                # Expires too, for the old clients that ignore Max-Age.
                expires = from_us(now_us) + max(self.max_age, timedelta(0))
                lifetime.append("Expires=" + format_datetime(expires, usegmt=True))
        return self._join(value, lifetime, https)

    def delete_cookie(self, *, https: bool) -> str:
        """A ``Set-Cookie`` value that removes the cookie, with the same attributes as set."""
        if self.style == "starlette":
            return self._join("", [f"expires={_EPOCH_EXPIRES}"], https)
        return self._join("", ["Max-Age=0", f"Expires={_EPOCH_EXPIRES}"], https)

    def _join(self, value: str, lifetime: list[str], https: bool) -> str:
        if self.style == "starlette":
            # Starlette's order and case: path, lifetime, then its "security flags".
            parts = [f"{self.cookie_name}={value}", f"path={self.path}", *lifetime]
            if self.httponly:
                parts.append("httponly")
            if self.samesite:
                parts.append(f"samesite={self.samesite}")
            if self.is_secure(https):
                parts.append("secure")
            if self.domain:
                parts.append(f"domain={self.domain}")
            if self.partitioned:
                parts.append("partitioned")
            return "; ".join(parts)
        parts = [f"{self.cookie_name}={value}", *lifetime]
        if self.domain:
            parts.append(f"Domain={self.domain}")
        parts.append(f"Path={self.path}")
        if self.is_secure(https):
            parts.append("Secure")
        if self.httponly:
            parts.append("HttpOnly")
        if self.samesite:
            parts.append(f"SameSite={self.samesite.capitalize()}")
        if self.partitioned:
            parts.append("Partitioned")
        return "; ".join(parts)


def parse_cookie_header(header: str | None) -> dict[str, str]:
    """Parse a ``Cookie`` request header into a dict; the first of repeated names wins.

    Lenient like browsers are: pieces without ``=`` are skipped, surrounding quotes dropped.
    The first occurrence wins because browsers send the most specific path first.
    """
    cookies: dict[str, str] = {}
    if not header:
        return cookies
    for piece in header.split(";"):
        name, sep, value = piece.partition("=")
        name = name.strip()
        if not sep or not name or name in cookies:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies[name] = value
    return cookies


def cookie_value(header: str, name: str, valid: Callable[[str], bool] | None = None) -> str | None:
    """The value :func:`parse_cookie_header` would give ``name`` (None if absent), without
    building the dict: the integrations' per-request lookup of the one session cookie.

    With ``valid``, the first value it accepts wins, and the first value only when none
    does: a browser sends every cookie of that name it holds (the longest path first, then
    the oldest), so another app's cookie on a parent domain, a leftover of an older path or
    one planted by a sibling subdomain comes before the app's own, and must not hide it.
    """
    # _values_of's loop, written out: every request with a cookie runs it, and the
    # generator would cost it a quarter of a microsecond.
    first: str | None = None
    for piece in header.split(";"):
        key, sep, value = piece.partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if valid is None or valid(value):
                return value
            if first is None:
                first = value
    return first


def cookie_ids(header: str, name: str, valid: Callable[[str], bool]) -> list[str]:
    """The distinct values of ``name`` that ``valid`` accepts, in the order sent, at most
    :data:`MAX_COOKIE_IDS`: the ids to try, one after the other, when the first names no
    session (another app's id on a parent domain, an expired one left at an older path)."""
    found: list[str] = []
    for value in _values_of(header, name):
        if value not in found and valid(value):
            found.append(value)
            if len(found) == MAX_COOKIE_IDS:
                break
    return found


def _values_of(header: str, name: str) -> Iterator[str]:
    """Each value of cookie ``name`` in a ``Cookie`` header, unquoted, in the order sent.
    A plain loop over the pieces: next to a request's other work it costs less than one
    regex search (whose engine the rest of a request leaves cold), measured in context."""
    for piece in header.split(";"):
        key, sep, value = piece.partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            yield value
