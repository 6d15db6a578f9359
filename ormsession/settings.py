"""Settings from the environment (``ORMSESSION_*``) and ``.env``, via pydantic-settings.

Read only at the edges: :func:`ormsession.configure`, the integrations and the CLI. Core
classes take typed keyword arguments and never read the environment themselves.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ormsession._manager_base import DEFAULT_GC_BATCH_SECONDS, DEFAULT_GC_BATCH_SIZE
from ormsession.cookies import CookieOptions, SameSite
from ormsession.expiry import ExpiryPolicy
from ormsession.urls import redact_url

__all__ = ["DEFAULT_URL", "OrmsessionSettings", "parse_duration"]

#: The embedded default: a SQLite file in the working directory.
DEFAULT_URL = "sqlite:///ormsession.sqlite3"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta | str:
    """``"3600"``, ``"90s"``, ``"30m"``, ``"12h"``, ``"14d"`` or ``"2w"`` as a timedelta
    (anything else is left for pydantic's own ISO 8601 / HH:MM:SS parsing)."""
    text = text.strip().lower()
    unit = _UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit else text
    try:
        return timedelta(seconds=float(number) * (unit or 1))
    except ValueError:
        return text


class OrmsessionSettings(BaseSettings):
    """Every option of :func:`ormsession.configure`, each also ``ORMSESSION_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="ORMSESSION_",
        env_file=".env",
        extra="ignore",
        validate_default=True,
    )

    # -- the store -------------------------------------------------------------------
    url: str = Field(DEFAULT_URL, description="Store URL; the scheme picks the store.")
    table_name: str = Field("session", description="SQL table name.")
    key_prefix: str = Field("ormsession:", description="Key prefix on Redis and Couchbase.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to wait for the store.")
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
    set_cookie: bool = Field(True, description="Emit Set-Cookie (beego's enableSetCookie).")
    # -- where the id may come from (used by the integrations) ------------------------
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
    serializer: Literal["json", "msgpack"] = "json"
    id_prefix: str = ""
    id_bytes: int = Field(32, ge=32, le=128)
    on_store_error: Literal["raise", "fresh"] = "raise"
    max_attempts: int = Field(10, ge=1, le=100)
    gc_batch_size: int = Field(DEFAULT_GC_BATCH_SIZE, ge=1, le=100_000)
    gc_batch_seconds: float | None = Field(
        DEFAULT_GC_BATCH_SECONDS,
        gt=0,
        le=3600,
        description="A gc statement slower than this makes the next ones smaller (None: never).",
    )

    @field_validator("absolute_timeout", "cookie_lifetime", "gc_batch_seconds", mode="before")
    @classmethod
    def _zero_means_none(cls, value: Any) -> Any:
        # beego (and many env files) use 0 for "not set".
        return None if value in (0, "0", "", "none", "None") else value

    @field_validator("idle_timeout", "absolute_timeout", "cookie_lifetime", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "url" and isinstance(value, str) else value)

    def cookie_options(self) -> CookieOptions:
        return CookieOptions(
            name=self.cookie_name,
            path=self.cookie_path,
            domain=self.cookie_domain,
            secure=self.cookie_secure,
            httponly=self.cookie_httponly,
            samesite=self.cookie_samesite,
            max_age=self.cookie_lifetime,
            host_prefix=self.cookie_host_prefix,
        )

    def expiry_policy(self) -> ExpiryPolicy:
        return ExpiryPolicy(
            idle_timeout=self.idle_timeout,
            absolute_timeout=self.absolute_timeout,
            refresh_ratio=self.refresh_ratio,
        )

    def manager_options(self) -> dict[str, Any]:
        """Typed keyword arguments for ``SessionManager``/``AsyncSessionManager``."""
        from ormsession.serializers import serializer_by_name

        return {
            "cookie": self.cookie_options(),
            "expiry": self.expiry_policy(),
            "serializer": serializer_by_name(self.serializer),
            "id_prefix": self.id_prefix,
            "id_bytes": self.id_bytes,
            "max_data_bytes": self.max_data_bytes,
            "max_attempts": self.max_attempts,
            "on_store_error": self.on_store_error,
            "set_cookie": self.set_cookie,
            "gc_batch_size": self.gc_batch_size,
            "gc_batch_seconds": self.gc_batch_seconds,
        }
