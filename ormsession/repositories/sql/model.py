"""The SQLAlchemy model of the session table.

The design card names it ``Session``, table ``session``, with beego's three columns
(``session_key``, ``session_data``, ``session_expiry``) plus what the repository contract
needs: a version for compare-and-set, a creation time for the absolute timeout, the
key a regenerated session moved to (a *moved marker*, see the repository contract), and
the user a login bound it to with the metadata a "where you're signed in" page lists
(revision 0003). ``session_key`` holds the SHA-256 of the session id, never the id itself.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache

from sqlalchemy import CHAR, BigInteger, Index, MetaData, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ormsession.errors import ConfigurationError
from ormsession.repositories.base import MAX_HANDLE, MAX_IP, MAX_USER_AGENT, MAX_USER_ID
from ormsession.repositories.sql.types import SessionBytes, UTCDateTime, exact_text

__all__ = ["DEFAULT_TABLE_NAME", "Base", "Session", "session_table"]

DEFAULT_TABLE_NAME = "session"
# Table names cannot be bound as parameters, so only plain identifiers get near the SQL.
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,50}")


class Base(DeclarativeBase):
    """Declarative base of ormsession's own tables (kept apart from the app's metadata)."""

    metadata = MetaData()


class Session(Base):
    """One stored session (a row); the request-facing object is ``RequestSession``."""

    __tablename__ = DEFAULT_TABLE_NAME
    __table_args__ = (
        Index("ix_session_session_expiry", "session_expiry"),
        # A user's sessions: sessions_of, revoke and revoke_all look them up by user and
        # skip the expired ones in the same index range.
        Index("ix_session_session_user_id", "session_user_id", "session_expiry"),
    )

    #: SHA-256 hex of the session id (64 characters, like beego's ``char(64)``).
    session_key: Mapped[str] = mapped_column(CHAR(64), primary_key=True)
    #: The serialized session (JSON by default).
    session_data: Mapped[bytes] = mapped_column(SessionBytes, nullable=False)
    #: When the session ends unless used again (UTC); indexed for reads and batched gc.
    session_expiry: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    #: When the session began (UTC), for the absolute timeout.
    session_created: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    #: Incremented by every write: the compare-and-set token against lost updates.
    session_version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    #: NULL for a session. Set, the row is a moved marker left by a rename (regenerate):
    #: the key the session moved to; no data, version 0, the rename's expiry. It holds
    #: the old key until it expires and lets a delete of the old key follow the session.
    session_moved_to: Mapped[str | None] = mapped_column(CHAR(64), nullable=True)
    #: The user a login bound the session to (NULL: not bound). A marker keeps it only
    #: while its rename is in flight (see :mod:`.moves`).
    session_user_id: Mapped[str | None] = mapped_column(exact_text(MAX_USER_ID), nullable=True)
    #: How the user names this session (stable across renames), and where the login came from.
    session_handle: Mapped[str | None] = mapped_column(exact_text(MAX_HANDLE), nullable=True)
    session_user_agent: Mapped[str | None] = mapped_column(
        exact_text(MAX_USER_AGENT), nullable=True
    )
    session_ip: Mapped[str | None] = mapped_column(exact_text(MAX_IP), nullable=True)
    #: When the session was last written (create, update, touch, rename); NULL in rows
    #: written before revision 0003.
    session_seen: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


def validate_table_name(name: str) -> str:
    if not _TABLE_NAME.fullmatch(name):
        raise ConfigurationError(
            f"table name {name!r} must be a plain identifier (letters, digits, '_')"
        )
    return name


@lru_cache(maxsize=16)
def session_table(name: str = DEFAULT_TABLE_NAME) -> Table:
    """The session table under ``name`` (the model's own table for the default name).

    A different name lets an app whose database already has a ``session`` table (beego's,
    say) keep it while moving over.
    """
    validate_table_name(name)
    if name == DEFAULT_TABLE_NAME:
        return Session.__table__  # type: ignore[return-value]
    table = Session.__table__.to_metadata(MetaData(), name=name)  # type: ignore[attr-defined]
    for index in list(table.indexes):
        index.name = f"ix_{name}_{index.columns[0].name}"  # as the migrations name them
    return table  # type: ignore[no-any-return]
