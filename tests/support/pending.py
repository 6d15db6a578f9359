"""Work in flight on another branch that a test must know about until it is merged."""

from __future__ import annotations

import inspect

__all__ = ["sql_renames_resealed_data"]


def sql_renames_resealed_data() -> bool:
    """Whether the SQL store's rename takes the re-sealed data of an encrypted session.

    Temporary: until that change (branch enc-sql) is merged, regenerating an encrypted
    session fails on the SQL stores whatever the caller, so tests that regenerate on SQL
    keep the data in plaintext (``encrypt=False``); once merged, they run encrypted, as on
    every other store."""
    from ormsession.repositories.sql.repository import SqlRepository

    return "data" in inspect.signature(SqlRepository.rename).parameters
