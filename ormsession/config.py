"""``Config``: every option of ormsession, declared once, in one frozen, typed object.

The managers, the stores' factories and the integrations all take a :class:`Config`.
Build one directly (``Config(idle_timeout=timedelta(hours=2))``, which reads no
environment), or let :func:`ormsession.configure` build it from ``ORMSESSION_*``
environment variables and ``.env`` (:class:`~ormsession.settings.OrmsessionSettings`, the
same fields read from outside). Invalid values raise :class:`ConfigurationError` naming the
option, never echoing the value (it may be a password).
"""

from __future__ import annotations

import difflib
import json
from datetime import timedelta
from importlib.util import find_spec
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import NoDecode

from ormsession.cookies import CookieOptions, SameSite
from ormsession.encryption import DataCipher
from ormsession.errors import ConfigurationError, MissingDriverError
from ormsession.expiry import ExpiryPolicy
from ormsession.metrics import MetricSink
from ormsession.serializers import Serializer, serializer_by_name
from ormsession.urls import SecretUrl

__all__ = ["DEFAULT_URL", "Config", "parse_duration"]

#: The embedded default: a SQLite file in the working directory.
DEFAULT_URL = "sqlite:///ormsession.sqlite3"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta | str:
    """``"3600"``, ``"90s"``, ``"30m"``, ``"12h"``, ``"14d"`` or ``"2w"`` as a timedelta
    (anything else is left, as written, for pydantic's own ISO 8601 / HH:MM:SS parsing)."""
    text = text.strip()
    lowered = text.lower()
    unit = _UNITS.get(lowered[-1:]) if lowered else None
    number = lowered[:-1] if unit else lowered
    try:
        return timedelta(seconds=float(number) * (unit or 1))
    except (ValueError, OverflowError):
        return text


def _is_zero(value: Any) -> bool:
    """beego (and many env files) write 0 for "not set"."""
    if isinstance(value, str):
        return value.strip().lower() in ("0", "", "none")
    return (type(value) in (int, float) and value == 0) or (
        isinstance(value, timedelta) and not value
    )


class Config(BaseModel):
    """Every option of ormsession (each also ``ORMSESSION_<NAME>`` in the environment)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    # -- the store -------------------------------------------------------------------
    url: SecretUrl = Field(
        SecretUrl(DEFAULT_URL),
        description="Store URL; the scheme picks the store. A plain str is accepted; it "
        "shows as the URL with its passwords as *** (get_secret_value() is the URL).",
    )
    table_name: str = Field("session", description="SQL table name.")
    key_prefix: str = Field("ormsession:", description="Key prefix on Redis and Couchbase.")
    store_timeout: float = Field(
        5.0,
        gt=0,
        le=3600,
        description=(
            "Seconds one store operation may take, all included (pool wait, connecting, "
            "the statement, a retry); then StoreUnavailableError."
        ),
    )
    pool_size: int | None = Field(None, ge=1, description="Connection pool size.")
    schema_check: bool = Field(True, description="Check the SQL schema revision at start-up.")
    auto_migrate: bool | None = Field(
        None, description="Run SQL migrations at start-up (default: only for SQLite)."
    )
    # -- cookies ---------------------------------------------------------------------
    cookie_name: str = "session"
    cookie_path: str = "/"
    cookie_domain: str | None = None
    cookie_secure: bool | None = Field(None, description="None: Secure on https requests.")
    cookie_httponly: bool = True
    cookie_samesite: SameSite | None = "lax"
    cookie_lifetime: timedelta | None = Field(
        None, description="Cookie Max-Age; None for a browser-session cookie."
    )
    cookie_host_prefix: bool = False
    cookie_partitioned: bool = Field(
        False, description="Partitioned (CHIPS): one cookie per top-level site; implies Secure."
    )
    set_cookie: bool = Field(True, description="Emit Set-Cookie (beego's enableSetCookie).")
    # -- where the id may come from (read by the integrations) ------------------------
    id_header: str | None = Field(None, description="Also accept the id in this header.")
    id_query_param: str | None = Field(
        None, description="Also accept the id in this query parameter (leaks into logs; avoid)."
    )
    trust_forwarded_proto: bool = Field(
        False, description="Treat X-Forwarded-Proto: https as https (behind a TLS proxy)."
    )
    # -- lifetime and data ------------------------------------------------------------
    idle_timeout: timedelta = timedelta(days=1)
    absolute_timeout: timedelta | None = timedelta(days=30)
    refresh_ratio: float = Field(0.1, ge=0, lt=1)
    max_data_bytes: int = Field(256 * 1024, gt=0)
    serializer: Literal["json", "msgpack"] | Serializer = Field(
        "json", description="'json', 'msgpack', or a Serializer object (not from settings)."
    )
    id_prefix: str = Field("", pattern=r"^[A-Za-z0-9_-]{0,32}$")
    id_bytes: int = Field(32, ge=32, le=128)
    on_store_error: Literal["raise", "fresh"] = Field(
        "raise",
        description="A store outage: raise StoreError, or ('fresh') serve unsaved sessions.",
    )
    on_lost_changes: Literal["drop", "raise"] = Field(
        "drop",
        description="Changes of a session another request destroyed or regenerated "
        "meanwhile: drop them with a warning, or raise SessionLostError from save().",
    )
    encrypt: bool = Field(
        True,
        description="Encrypt session data at rest under a key derived from the session id "
        "(False: stored as serialized, readable by whoever reads the store).",
    )
    encryption_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Optional server-side secrets mixed into the data key, current first "
        "(older ones still open data until its next write).",
    )
    max_attempts: int = Field(10, ge=1, le=100)
    gc_batch_size: int = Field(1000, ge=1, le=100_000)
    gc_batch_seconds: float | None = Field(
        0.25,
        gt=0,
        le=3600,
        description="A gc statement slower than this makes the next ones smaller (None: never).",
    )

    # -- observability ------------------------------------------------------------------
    metrics: Literal["opentelemetry"] | MetricSink | None = Field(
        None,
        description="Where metrics go: 'opentelemetry' (the global meter provider; the otel "
        "extra), a callable taking a MetricEvent, or None (nothing is measured).",
    )

    # The cookie and expiry rules, checked and built once from the fields above.
    _cookie: CookieOptions = PrivateAttr()
    _expiry: ExpiryPolicy = PrivateAttr()

    def __init__(self, **options: Any) -> None:
        renamed = sorted(set(options) & set(RENAMED_OPTIONS))
        if renamed:
            raise ConfigurationError(unknown_options(renamed))
        try:
            super().__init__(**options)
        except ValidationError as exc:
            raise _own_error(exc) or ConfigurationError(describe(exc)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self).model_fields:
            raise ConfigurationError(f"a Config is frozen: use config.replace({name}=...)")
        super().__setattr__(name, value)

    def model_post_init(self, context: Any, /) -> None:
        if self.cookie_lifetime is not None and self.cookie_lifetime <= timedelta(0):
            raise ConfigurationError(
                "cookie_lifetime must be positive (0 or None: a browser-session cookie)"
            )
        self._cookie = CookieOptions(
            name=self.cookie_name,
            path=self.cookie_path,
            domain=self.cookie_domain,
            secure=self.cookie_secure,
            httponly=self.cookie_httponly,
            samesite=self.cookie_samesite,
            max_age=self.cookie_lifetime,
            host_prefix=self.cookie_host_prefix,
            partitioned=self.cookie_partitioned,
        )
        self._expiry = ExpiryPolicy(
            idle_timeout=self.idle_timeout,
            absolute_timeout=self.absolute_timeout,
            refresh_ratio=self.refresh_ratio,
        )
        self.make_serializer()  # a missing driver (msgpack) fails here, before any I/O
        self.make_cipher()  # so does a secret too short to be one
        if self.metrics == "opentelemetry" and find_spec("opentelemetry") is None:
            raise MissingDriverError(
                "metrics='opentelemetry' needs opentelemetry-api: pip install 'ormsession[otel]'"
            )

    @field_validator("absolute_timeout", "cookie_lifetime", mode="before")
    @classmethod
    def _optional_duration(cls, value: Any) -> Any:
        if isinstance(value, str) and not _is_zero(value):
            value = parse_duration(value)
        return None if _is_zero(value) else value

    @field_validator("idle_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("cookie_samesite", "serializer", mode="before")
    @classmethod
    def _lowercase_name(cls, value: Any) -> Any:
        # Names written as people write them: Flask and the browsers' devtools write "Lax"
        # (the attribute is case-insensitive), an env file "MSGPACK".
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("encryption_secrets", mode="before")
    @classmethod
    def _secrets(cls, value: Any) -> Any:
        # From the environment: one secret as it is, or several as a JSON list.
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text.startswith("["):
            return [text] if text else []
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError("a JSON list of strings, or a single secret") from None

    @field_validator("gc_batch_seconds", "metrics", mode="before")
    @classmethod
    def _zero_means_none(cls, value: Any) -> Any:
        return None if _is_zero(value) else value

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, value: Any) -> Any:
        # Surrounding blanks (an .env line's trailing space) are never part of a URL.
        if isinstance(value, SecretStr | SecretUrl):
            value = value.get_secret_value()
        return value.strip() if isinstance(value, str) else value

    @property
    def cookie(self) -> CookieOptions:
        """How the session cookie is written (from the ``cookie_*`` options)."""
        return self._cookie

    @property
    def expiry(self) -> ExpiryPolicy:
        """When sessions end (from ``idle_timeout``, ``absolute_timeout``, ``refresh_ratio``)."""
        return self._expiry

    def make_serializer(self) -> Serializer:
        """The serializer the ``serializer`` option names (or the object it holds)."""
        if isinstance(self.serializer, str):
            return serializer_by_name(self.serializer)
        return self.serializer

    def make_cipher(self) -> DataCipher | None:
        """The cipher for session data (None with ``encrypt=False``)."""
        if not self.encrypt:
            if self.encryption_secrets:
                raise ConfigurationError("encryption_secrets are set but encrypt is False")
            return None
        return DataCipher([s.get_secret_value().encode() for s in self.encryption_secrets])

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied and validated (a frozen object is never changed)."""
        unknown = sorted(set(changes) - set(type(self).model_fields))
        if unknown:
            raise ConfigurationError(unknown_options(unknown))
        # Only the fields that were set: which options were chosen (not defaulted) is kept,
        # so the start-up log can tell a default store from one somebody picked.
        chosen = {name: getattr(self, name) for name in self.model_fields_set}
        return Config(**(chosen | changes))


#: Options that were renamed: old name -> new name (named in the error for the old one).
RENAMED_OPTIONS = {"connect_timeout": "store_timeout"}


def unknown_options(names: list[str]) -> str:
    renamed = [
        f"{name} is now {RENAMED_OPTIONS[name]}" for name in names if name in RENAMED_OPTIONS
    ]
    if renamed:
        return "renamed option(s): " + "; ".join(renamed)
    fields = list(Config.model_fields)
    named = [
        f"{name} (did you mean {close[0]}?)"
        if (close := difflib.get_close_matches(name, fields, n=1, cutoff=0.6))
        else name
        for name in names
    ]
    return f"unknown option(s) {', '.join(named)}; valid options: " + ", ".join(fields)


def _own_error(exc: ValidationError) -> ConfigurationError | None:
    """The ConfigurationError a check of ours raised inside validation, as it was raised:
    pydantic wraps every ValueError (which ConfigurationError also is) in its own error."""
    for error in exc.errors(include_url=False):
        raised = (error.get("ctx") or {}).get("error")
        if isinstance(raised, ConfigurationError):
            return raised
    return None


#: What a duration option accepts, for the error that refuses a value.
DURATION_FORMS = (
    "seconds (3600), a number with a unit s, m, h, d or w (90s, 30m, 12h, 14d, 2w), "
    "HH:MM:SS (01:30:00), ISO 8601 (PT1H) or a timedelta"
)
_OPTIONAL_DURATIONS = ("absolute_timeout", "cookie_lifetime")


def _problem(error: Any) -> str:
    name = ".".join(str(part) for part in error["loc"])
    if str(error["type"]).startswith("time_delta"):
        off = "; 0 or none turns it off" if name in _OPTIONAL_DURATIONS else ""
        return f"{name}: not a duration; write {DURATION_FORMS}{off}"
    return f"{name}: {error['msg']}"


#: What an option that is a name or, in code, an object accepts: pydantic reports each side
#: of the union on its own (``serializer.is-instance[Serializer]: ...``), which reads as if
#: the settings had to give an object.
_UNION_FORMS = {
    "serializer": "must be json or msgpack (in code, also a Serializer object)",
    "metrics": "must be opentelemetry or none (in code, also a callable taking a MetricEvent)",
}


def describe(exc: ValidationError) -> str:
    """A validation error as one line naming each option and its problem, not its value."""
    problems: list[str] = []
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        problem = f"{field}: {_UNION_FORMS[field]}" if field in _UNION_FORMS else _problem(error)
        if problem not in problems:
            problems.append(problem)
    return f"invalid ormsession settings: {'; '.join(problems)}"
