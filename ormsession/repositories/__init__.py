"""Stores: the repository contract and one module per store, chosen by URL scheme."""

from ormsession.repositories.base import (
    AsyncSessionRepository,
    SessionRepository,
    StoredSession,
)
from ormsession.repositories.registry import (
    open_async_repository,
    open_repository,
    supported_schemes,
)

__all__ = [
    "AsyncSessionRepository",
    "SessionRepository",
    "StoredSession",
    "open_async_repository",
    "open_repository",
    "supported_schemes",
]
