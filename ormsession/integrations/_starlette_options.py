"""Starlette's ``SessionMiddleware`` arguments, under their own names and meanings.

Switching from ``starlette.middleware.sessions.SessionMiddleware`` is one import: the same
call (``SessionMiddleware(app, secret_key=..., max_age=..., ...)``) keeps its meaning. Any
of these names puts the middleware in *Starlette mode*: Starlette's defaults for what the
app did not set (a 14-day cookie), Starlette's ``Set-Cookie`` layout, and ``max_age`` as
the server-side bound too. What Starlette signed into the cookie (its timestamp, checked
against ``max_age``) becomes the store's idle timeout here.

Precedence: a Starlette name and its ormsession twin (``session_cookie`` and
``cookie_name``, ...) both set to different values is a :class:`ConfigurationError`; an
ormsession option the app set (keyword, ``config=`` or environment) and Starlette did not
name is kept; ``idle_timeout`` / ``absolute_timeout`` set by the app win over what
``max_age`` implies.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from ormsession.config import Config
from ormsession.cookies import CookieOptions
from ormsession.errors import ConfigurationError
from ormsession.expiry import ExpiryPolicy

__all__ = [
    "STARLETTE_MAX_AGE",
    "STARLETTE_NAMES",
    "UNSET",
    "StarletteOverrides",
    "Unset",
    "starlette_overrides",
]

#: Starlette's default ``max_age``: 14 days, in seconds.
STARLETTE_MAX_AGE: Final = 14 * 24 * 60 * 60


class Unset(enum.Enum):
    """The default of a Starlette argument the app did not pass (``None`` means something)."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET


@dataclass(frozen=True, slots=True)
class StarletteOverrides:
    """What the middleware passes to every ``open`` / ``save`` in Starlette mode."""

    cookie: CookieOptions
    #: None: the manager's own expiry rules apply unchanged.
    expiry: ExpiryPolicy | None


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a str")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False")
    return value


def _domain(value: object) -> str | None:
    return None if value is None else _text("domain", value)


def _same_site(value: object) -> str:
    if not isinstance(value, str) or value.lower() not in ("lax", "strict", "none"):
        raise ConfigurationError("same_site must be 'lax', 'strict' or 'none'")
    return value.lower()


def _secure(value: object) -> bool | None:
    # https_only=False only means "Secure is not forced": an https request still gets a
    # Secure cookie (ormsession's default), which a browser on https keeps the same way.
    return True if _flag("https_only", value) else None


def _lifetime(value: object) -> timedelta | None:
    """``max_age`` in seconds as the cookie's lifetime; zero or negative (an already
    expired cookie, so nothing is stored) is kept as it is."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError("max_age must be a number of seconds (int) or None")
    if isinstance(value, float) and not value.is_integer():
        raise ConfigurationError("max_age must be a whole number of seconds")
    if value > _MAX_AGE_LIMIT:
        # Past this, expiry dates leave what the stores (and datetime) can hold.
        raise ConfigurationError(f"max_age must be at most {_MAX_AGE_LIMIT} seconds (100 years)")
    return timedelta(seconds=int(value))


_MAX_AGE_LIMIT = 100 * 365 * 24 * 3600


#: Starlette name -> (ormsession twin, conversion to the twin's value).
_TWINS: dict[str, tuple[str, Callable[[object], Any]]] = {
    "session_cookie": ("cookie_name", lambda value: _text("session_cookie", value)),
    "path": ("cookie_path", lambda value: _text("path", value)),
    "domain": ("cookie_domain", _domain),
    "same_site": ("cookie_samesite", _same_site),
    "https_only": ("cookie_secure", _secure),
    "partitioned": ("cookie_partitioned", lambda value: _flag("partitioned", value)),
    "max_age": ("cookie_lifetime", _lifetime),
}
STARLETTE_NAMES: Final = frozenset(_TWINS) | {"secret_key"}


def starlette_overrides(
    given: Mapping[str, object], config: Config, explicit: Set[str]
) -> StarletteOverrides:
    """The cookie and expiry rules of Starlette mode.

    ``given``: the Starlette arguments the app passed (``secret_key`` aside); ``config``:
    the resolved configuration; ``explicit``: the options in it the app set itself.
    """
    values: dict[str, Any] = {}
    for name, (twin, convert) in _TWINS.items():
        if name in given:
            value = convert(given[name])
            if twin in explicit and getattr(config, twin) != value:
                raise ConfigurationError(
                    f"{name} (Starlette's name) and {twin} (ormsession's) are both set, to "
                    "different values: pass one of them"
                )
            values[twin] = value
        elif twin == "cookie_lifetime" and twin not in explicit:
            values[twin] = timedelta(seconds=STARLETTE_MAX_AGE)
        else:
            values[twin] = getattr(config, twin)
    lifetime: timedelta | None = values["cookie_lifetime"]
    cookie = CookieOptions(
        name=values["cookie_name"],
        path=values["cookie_path"],
        domain=values["cookie_domain"],
        secure=values["cookie_secure"],
        httponly=config.cookie_httponly,
        samesite=values["cookie_samesite"],
        max_age=lifetime,
        host_prefix=config.cookie_host_prefix,
        partitioned=values["cookie_partitioned"],
        style="starlette",
    )
    return StarletteOverrides(cookie, _expiry(config, explicit, lifetime))


def _expiry(config: Config, explicit: Set[str], lifetime: timedelta | None) -> ExpiryPolicy | None:
    """The store keeps a session as long as its cookie lives (Starlette's signature
    expired with ``max_age`` since the last write; here a read pushes it back too), unless
    the app chose the server-side timeouts itself. A browser-session cookie (``None``) or
    an already expired one (zero or less: nothing is stored) leaves them as configured."""
    if lifetime is None or lifetime <= timedelta(0):
        return None
    idle = config.idle_timeout if "idle_timeout" in explicit else lifetime
    absolute = config.absolute_timeout
    if absolute is not None and "absolute_timeout" not in explicit:
        # Never end a session before the cookie that carries it.
        absolute = max(absolute, lifetime)
    if idle == config.idle_timeout and absolute == config.absolute_timeout:
        return None
    return ExpiryPolicy(
        idle_timeout=idle, absolute_timeout=absolute, refresh_ratio=config.refresh_ratio
    )
