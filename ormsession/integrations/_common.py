"""Request logic every integration shares, with no framework and no I/O.

An integration (WSGI, Flask, ASGI) only adapts its framework's request and response objects
to these functions, so the rules live in one place:

- where the session id comes from: the cookie, then (opt-in) an HTTP header, then (opt-in)
  a URL query parameter, as beego allowed;
- whether the request is https (the cookie's Secure flag), trusting ``X-Forwarded-Proto``
  only when the app says a TLS-terminating proxy sets it;
- which response headers to add: the ``Set-Cookie`` the manager returned, the id header for
  header-only clients, and ``Vary``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import parse_qs

from ormsession.config import Config
from ormsession.cookies import cookie_ids, cookie_value
from ormsession.errors import ConfigurationError
from ormsession.session import RequestSession

__all__ = [
    "FROM_REQUEST",
    "REQUEST_OPTION_NAMES",
    "FromRequest",
    "IdSource",
    "RequestOptions",
    "SessionRequest",
    "config_for",
    "is_https",
    "late_change",
    "merge_vary",
    "or_from_request",
    "warn_cookie_lost",
]

logger = logging.getLogger("ormsession")

IdSource = Literal["cookie", "header", "query"]

#: Settings the integrations use themselves (the manager never sees them).
REQUEST_OPTION_NAMES = frozenset({"id_header", "id_query_param", "trust_forwarded_proto"})
_HEADER_NAME = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """How an integration reads requests; all opt-in, all off by default.

    ``id_header``: also accept the session id in this request header (and answer with the
    new id in the same response header when it changes). ``id_query_param``: also accept
    it in this query parameter (it then leaks into logs and Referer headers: avoid).
    ``trust_forwarded_proto``: believe ``X-Forwarded-Proto: https`` (only behind a proxy
    that sets it; otherwise any client could claim https).
    """

    id_header: str | None = None
    id_query_param: str | None = None
    trust_forwarded_proto: bool = False
    #: The (lowercase) request headers a request's session depends on.
    wanted_headers: frozenset[bytes] = field(init=False, repr=False, compare=False)
    #: The ``Vary`` value of a response that depends on the session: with an id header, the
    #: same URL answers differently per header value too.
    vary: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.id_header is not None and (
            not self.id_header or not set(self.id_header.lower()) <= _HEADER_NAME
        ):
            raise ConfigurationError(f"id_header {self.id_header!r} is not a valid header name")
        if self.id_query_param is not None and not self.id_query_param:
            raise ConfigurationError("id_query_param must not be empty (None disables it)")
        names = {b"cookie"}
        if self.trust_forwarded_proto:
            names.add(b"x-forwarded-proto")
        if self.id_header:
            names.add(self.id_header.lower().encode("latin-1"))
        object.__setattr__(self, "wanted_headers", frozenset(names))
        object.__setattr__(
            self, "vary", f"Cookie, {self.id_header}" if self.id_header else "Cookie"
        )

    @classmethod
    def from_config(cls, config: Config) -> RequestOptions:
        return cls(
            id_header=config.id_header or None,
            id_query_param=config.id_query_param or None,
            trust_forwarded_proto=config.trust_forwarded_proto,
        )


_SECURE_SCHEMES = ("https", "wss")


def is_https(scheme: str, forwarded_proto: str | None, *, trust_forwarded: bool) -> bool:
    """Whether the client talked https to us (or, when trusted, to our proxy).

    With several proxies the header is a list; the last entry is the one the nearest proxy
    (the one we trust) appended, so it is the one believed (as Werkzeug's ProxyFix does).
    """
    if trust_forwarded and forwarded_proto:
        return forwarded_proto.rsplit(",", 1)[-1].strip().lower() in _SECURE_SCHEMES
    return scheme.lower() in _SECURE_SCHEMES


def merge_vary(existing: str | None, names: list[str]) -> str:
    """A ``Vary`` value with ``names`` added to ``existing`` once each (case-insensitive)."""
    current = [part.strip() for part in (existing or "").split(",") if part.strip()]
    if "*" in current:
        return "*"
    seen = {part.lower() for part in current}
    for name in names:
        if name.lower() not in seen:
            current.append(name)
            seen.add(name.lower())
    return ", ".join(current)


class SessionRequest:
    """What one request says about its session: the id, where it came from, and https.

    Built from framework-neutral pieces (the ``Cookie`` header, a lookup of the other
    headers, the query string, the scheme); ``headers_for`` then turns the manager's answer
    into the response headers to add. Headers other than ``Cookie`` and the query string are
    looked at only when an option asks for them. ``is_valid``: the manager's id format
    (``SessionIds.is_valid``), so that a malformed cookie never hides a well-formed one of
    the same name.
    """

    __slots__ = ("_cookie", "https", "options", "session_id", "source")

    def __init__(
        self,
        options: RequestOptions,
        *,
        cookie_name: str,
        cookie_header: str | None,
        header: Callable[[str], str | None],
        query_string: Callable[[], str],
        scheme: str,
        is_valid: Callable[[str], bool] | None = None,
    ) -> None:
        self.options = options
        self._cookie = (cookie_header, cookie_name, is_valid)
        self.session_id, self.source = self._find_id(
            cookie_name, cookie_header, header, query_string, is_valid
        )
        forwarded = header("x-forwarded-proto") if options.trust_forwarded_proto else None
        self.https = is_https(scheme, forwarded, trust_forwarded=options.trust_forwarded_proto)

    @classmethod
    def from_wsgi(
        cls,
        environ: Mapping[str, object],
        options: RequestOptions,
        cookie_name: str,
        is_valid: Callable[[str], bool] | None = None,
    ) -> SessionRequest:
        def header(name: str) -> str | None:
            value = environ.get("HTTP_" + name.upper().replace("-", "_"))
            return value if isinstance(value, str) else None

        def query_string() -> str:
            query = environ.get("QUERY_STRING")
            return query if isinstance(query, str) else ""

        scheme = environ.get("wsgi.url_scheme")
        return cls(
            options,
            cookie_name=cookie_name,
            cookie_header=header("cookie"),
            header=header,
            query_string=query_string,
            scheme=scheme if isinstance(scheme, str) else "http",
            is_valid=is_valid,
        )

    @classmethod
    def from_asgi(
        cls,
        scope: Mapping[str, Any],
        options: RequestOptions,
        cookie_name: str,
        is_valid: Callable[[str], bool] | None = None,
    ) -> SessionRequest:
        # Only the few headers this needs are decoded (ASGI header names are lowercase).
        wanted = options.wanted_headers
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers") or ():
            if raw_name not in wanted:
                continue
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            if name in headers:
                # HTTP/2 may split Cookie into several headers; others fold with commas.
                value = headers[name] + ("; " if name == "cookie" else ", ") + value
            headers[name] = value
        return cls(
            options,
            cookie_name=cookie_name,
            cookie_header=headers.get("cookie"),
            header=lambda name: headers.get(name.lower()),
            query_string=lambda: (scope.get("query_string") or b"").decode("latin-1"),
            scheme=str(scope.get("scheme") or "http"),
            is_valid=is_valid,
        )

    def _find_id(
        self,
        cookie_name: str,
        cookie_header: str | None,
        header: Callable[[str], str | None],
        query_string: Callable[[], str],
        is_valid: Callable[[str], bool] | None,
    ) -> tuple[str | None, IdSource | None]:
        # The first place that carries a value wins, even if that value then proves invalid:
        # falling through to a weaker source would let a header or URL override a cookie.
        # Within the cookie, a malformed value is skipped for a well-formed one of the same
        # name (``is_valid``: the manager's id format), see cookie_value.
        from_cookie = cookie_value(cookie_header, cookie_name, is_valid) if cookie_header else None
        if from_cookie:
            return from_cookie, "cookie"
        if self.options.id_header:
            from_header = header(self.options.id_header)
            if from_header and from_header.strip():
                return from_header.strip(), "header"
        if self.options.id_query_param:
            query = query_string()
            values = parse_qs(query).get(self.options.id_query_param) if query else None
            if values and values[0]:
                return values[0], "query"
        return None, None

    def later_ids(self) -> list[str]:
        """The other well-formed ids the ``Cookie`` header holds under the session cookie's
        name, in the order sent (at most ``MAX_COOKIE_IDS`` in all): tried in turn when
        the first names no session."""
        header, name, is_valid = self._cookie
        if self.source != "cookie" or header is None or is_valid is None:
            return []
        return [value for value in cookie_ids(header, name, is_valid) if value != self.session_id]

    def headers_for(self, session: RequestSession, set_cookie: str | None) -> list[tuple[str, str]]:
        """Headers to add after ``manager.save(session)`` returned ``set_cookie``.

        ``Vary`` is added when the response may depend on the session (it was read or
        written, or a cookie is being set), as Flask does, so shared caches never serve one
        user's page to another, while responses that ignore the session stay cacheable.
        """
        headers: list[tuple[str, str]] = []
        if set_cookie is not None:
            headers.append(("Set-Cookie", set_cookie))
        if self.options.id_header is not None:
            id_header = self._id_header_value(session)
            if id_header is not None:
                headers.append(id_header)
        if self.varies(session, set_cookie):
            headers.append(("Vary", self.options.vary))
        return headers

    def varies(self, session: RequestSession, set_cookie: str | None) -> bool:
        """Whether the response depends on the session: it was read or written, destroyed,
        or a cookie is being set."""
        return session.accessed or session.destroyed or set_cookie is not None

    def _id_header_value(self, session: RequestSession) -> tuple[str, str] | None:
        """A header-only client cannot see Set-Cookie, so tell it its new id (after a
        regenerate, or when its unknown id was replaced by a stored session) in the header
        it used, or an empty value once its session is destroyed."""
        name = self.options.id_header
        if self.source != "header" or name is None:
            return None
        if not session.is_new and session.id != self.session_id:
            return name, session.id
        if session.is_new and session.destroyed:
            return name, ""
        return None


def config_for(
    config: Config | None, options: Mapping[str, object], *, manager_given: bool
) -> Config:
    """The configuration an integration runs with (``config``, else the environment; then
    ``options``). With a ready manager only the request options make sense here: cookie and
    store options belong to the manager, so passing them too is an error, not ignored."""
    from ormsession.settings import load_config

    if manager_given:
        misplaced = sorted(set(options) - REQUEST_OPTION_NAMES)
        if misplaced:
            raise ConfigurationError(
                f"option(s) {', '.join(misplaced)} configure the manager: pass them to "
                "ormsession.configure() (or configure_async()), not next to manager="
            )
    return load_config(config, **options)


def late_change(session: RequestSession, id_sent: str) -> bool:
    """Whether the app changed the session after its response headers went out (while
    streaming the body), so it must be saved again without a chance to send a cookie."""
    return session.dirty or session.id != id_sent


def warn_cookie_lost(session: RequestSession, id_sent: str, set_cookie: str | None) -> None:
    if session.lost:
        return  # the policy has said why nothing was saved
    if set_cookie is not None or session.id != id_sent:
        logger.warning(
            "the session's id changed after the response headers were sent (a regenerate, "
            "destroy or first write while streaming the body): the client did not get "
            "the new cookie; change the session before the response starts"
        )


class FromRequest(enum.Enum):
    """The type of :data:`FROM_REQUEST`."""

    FROM_REQUEST = "from the request"


#: The default ``user_agent`` and ``ip`` of the integrations' ``login_session``: read them
#: off the request (an app passes its own value, or None to keep none, instead).
FROM_REQUEST: Final = FromRequest.FROM_REQUEST


def or_from_request(
    value: str | FromRequest | None, from_request: Callable[[], str | None]
) -> str | None:
    """``value``, or what ``from_request()`` reads when it is :data:`FROM_REQUEST`."""
    if value is FROM_REQUEST:
        return from_request() or None
    return value
