"""ormsession: server-side web sessions on the stores you already run.

    import ormsession
    manager = ormsession.configure(url="postgresql+psycopg2://app@db/app")
    session = manager.open(cookie_value)      # unknown/expired/invalid id -> new session
    session["user_id"] = 42
    set_cookie = manager.save(session)        # a Set-Cookie value, or None

See the docs/ directory for configuration, stores, migrations and integrations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ormsession.config import Config
from ormsession.configure import configure, configure_async
from ormsession.cookies import CookieOptions
from ormsession.errors import (
    ConfigurationError,
    ConflictError,
    CorruptSessionDataError,
    MissingDriverError,
    OrmsessionError,
    SchemaError,
    SerializationError,
    SessionLostError,
    SessionTooLargeError,
    StoreError,
    StoreUnavailableError,
    TamperedSessionError,
    UserIdError,
)
from ormsession.expiry import ExpiryPolicy
from ormsession.gc import AsyncGcRunner, GcReport, GcRunner
from ormsession.manager import SessionManager
from ormsession.metrics import MetricEvent
from ormsession.repositories.base import (
    REPLACED_ID_GRACE_US,
    AsyncSessionRepository,
    OwnedSession,
    Owner,
    SessionRepository,
    StoredSession,
)
from ormsession.repositories.registry import register_store
from ormsession.serializers import JSONSerializer, MsgpackSerializer, Serializer, Tag
from ormsession.session import RequestSession
from ormsession.settings import OrmsessionSettings, load_config
from ormsession.urls import SecretUrl
from ormsession.users import UserSession

if TYPE_CHECKING:
    from ormsession.async_manager import AsyncSessionManager

__version__ = "0.1.0"

__all__ = [
    "REPLACED_ID_GRACE_US",
    "AsyncGcRunner",
    "AsyncSessionManager",
    "AsyncSessionRepository",
    "Config",
    "ConfigurationError",
    "ConflictError",
    "CookieOptions",
    "CorruptSessionDataError",
    "ExpiryPolicy",
    "GcReport",
    "GcRunner",
    "JSONSerializer",
    "MetricEvent",
    "MissingDriverError",
    "MsgpackSerializer",
    "OrmsessionError",
    "OrmsessionSettings",
    "OwnedSession",
    "Owner",
    "RequestSession",
    "SchemaError",
    "SecretUrl",
    "SerializationError",
    "Serializer",
    "SessionLostError",
    "SessionManager",
    "SessionRepository",
    "SessionTooLargeError",
    "StoreError",
    "StoreUnavailableError",
    "StoredSession",
    "Tag",
    "TamperedSessionError",
    "UserIdError",
    "UserSession",
    "configure",
    "configure_async",
    "load_config",
    "register_store",
]


def __getattr__(name: str) -> Any:
    # The async manager is imported on first use only, so `import ormsession` never pulls
    # in asyncio machinery (or SQLAlchemy's greenlet-based asyncio extension).
    if name == "AsyncSessionManager":
        from ormsession.async_manager import AsyncSessionManager

        return AsyncSessionManager
    raise AttributeError(f"module 'ormsession' has no attribute {name!r}")
