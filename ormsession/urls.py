"""URL helpers that keep passwords out of every message, log line and repr."""

from __future__ import annotations

import ipaddress
import re
import shlex

from pydantic import Secret

__all__ = [
    "PASSWORD_PLACEHOLDER",
    "SecretUrl",
    "host_problem",
    "redact_url",
    "scheme_of",
    "scrub",
    "slashes_problem",
    "unencoded_userinfo_hint",
    "upgrade_command",
]

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
# A value runs to the next '&' or ';': an unencoded '#' in a password does not end it.
_QUERY_SECRET = re.compile(r"(?i)([?&;][^=&;#]*(?:password|passwd|pwd|secret|token)=)[^&;]*")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def redact_url(url: str, mask: str = "***") -> str:
    """``url`` with any password (in the userinfo or the query) replaced by ``mask``.

    The userinfo ends at the *last* ``@`` of the authority, as URL parsers read it, so a
    password with an unencoded ``@`` is hidden whole. A password with an unencoded ``/``,
    ``?`` or ``#`` ends the authority early for a URL parser, so when the authority has no
    ``@`` but the URL has one further on, everything up to the last ``@`` is taken as the
    userinfo (if it has a ``:``): a URL with an ``@`` in its query may be shown more
    redacted than it needs, never less. A URL without ``scheme://`` (``user:pw@host/db``,
    a mistake) is read the same way.
    """
    match = _SCHEME.match(url)
    head, rest = (url[: match.end()], url[match.end() :]) if match else ("", url)
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    if at < 0:
        at = rest.rfind("@")
    if at >= 0 and ":" in rest[:at]:
        user = rest[:at].split(":", 1)[0]
        rest = f"{user}:{mask}{rest[at:]}"
    return head + _QUERY_SECRET.sub(lambda match: match[1] + mask, rest)


#: Appended to a URL error when the user name or password seems to hold a character that
#: ends it early: the parser then reports a bad host or port the URL does not seem to have.
USERINFO_HINT = (
    "; a user name or password holding '@', ':', '/', '?', '#' or '%' must be "
    "percent-encoded (urllib.parse.quote(password, safe=''): '@' is %40, '/' is %2F)"
)


def unencoded_userinfo_hint(url: str) -> str:
    """:data:`USERINFO_HINT` when ``url``'s authority holds more than one ``@``, or none while
    an ``@`` follows it (a ``/``, ``?`` or ``#`` in the password ended it early); else ``""``.
    Only appended to an error the URL already caused: a legitimate ``@`` further on (in a
    query value) may match too, and then it is merely a hint that does not apply."""
    match = _SCHEME.match(url)
    rest = url[match.end() :] if match else url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    if authority.count("@") > 1 or ("@" not in authority and "@" in rest[end:]):
        return USERINFO_HINT
    return ""


#: What stands for a password in a command ormsession suggests (it never prints one).
PASSWORD_PLACEHOLDER = "<password>"  # noqa: S105 -- a placeholder, not a password


def upgrade_command(url: str) -> str:
    """The ``ormsession db upgrade`` command for the store at ``url``, ready to paste once
    the placeholder is replaced: ``***`` would be read as the password, and no ``--url``
    would migrate the default SQLite file instead."""
    shown = redact_url(url.strip(), mask=PASSWORD_PLACEHOLDER)
    return f"ormsession db upgrade --url {shlex.quote(shown)}"


def scheme_of(url: str) -> str:
    """The lowercased scheme of ``url`` (``""`` when it has no ``scheme://``)."""
    match = _SCHEME.match(url)
    return match[1].lower() if match else ""


_BARE_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(?!//)")
#: What a SQLite URL looks like, for the error that refuses a malformed one.
SQLITE_FORMS = (
    "sqlite:///relative/path.db (three slashes: a path from the working directory), "
    "sqlite:////absolute/path.db (four: an absolute path) or sqlite:// (in memory)"
)


def slashes_problem(url: str, schemes: list[str]) -> str | None:
    """What is wrong with ``url`` when it names one of ``schemes`` without the ``//`` after
    the colon (``sqlite:/x.db``): its scheme is then not read at all, and the error would
    otherwise list the very scheme it uses. None when that is not the mistake."""
    match = _BARE_SCHEME.match(url.strip())
    if match is None:
        return None
    scheme = match[1].lower()
    if scheme not in schemes and scheme.split("+", 1)[0] not in schemes:
        return None
    if scheme.split("+", 1)[0] == "sqlite":
        return f"{redact_url(url)!r} is not a SQLite URL: write {SQLITE_FORMS}"
    return f"{redact_url(url)!r} needs '//' after '{match[1]}:' ({match[1]}://...)"


def scrub(message: str, *secrets: str | None) -> str:
    """``message`` with each non-empty secret replaced by ``***`` (drivers sometimes echo
    connection parameters in their errors)."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message


def host_problem(host: str) -> str | None:
    """What is wrong with ``host`` as a network host (None: nothing).

    An IP address, or a DNS name of labels of letters, digits, ``-`` and ``_`` (Docker and
    Kubernetes service names use ``_``), at most 63 characters each and 253 in all: a
    longer name fails deep inside the resolver (Python's IDNA codec raises UnicodeError).
    """
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        pass
    else:
        return None
    if bracketed:
        return "not an IPv6 address inside [...]"
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253:
        return "a host name has 1 to 253 characters"
    if not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return "a host name is dot-separated labels of 1-63 letters, digits, - or _"
    return None


class SecretUrl(Secret[str]):
    """A store URL that shows itself with its passwords as ``***``: ``str()``, ``repr()``,
    and ``model_dump_json()`` of a model holding it. ``get_secret_value()`` is the URL."""

    def _display(self) -> str:
        return redact_url(self.get_secret_value())
