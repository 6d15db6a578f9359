"""Stores: the repository contract and one package per store, chosen by URL scheme."""

from ormsession.repositories.base import (
    AsyncSessionRepository,
    SessionRepository,
    StoredSession,
)
from ormsession.repositories.registry import open_store, register_store, supported_schemes

__all__ = [
    "AsyncSessionRepository",
    "SessionRepository",
    "StoredSession",
    "open_store",
    "register_store",
    "supported_schemes",
]
