"""The read's parameters, bound from µs by the precomputed function every request uses, are
exactly what the generic binding of the same time gives, for every driver's parameter style
(no database needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect

from ormsession.expiry import to_us
from ormsession.repositories.sql.dbapi import CompiledStatement
from ormsession.repositories.sql.model import session_table
from ormsession.repositories.sql.statements import SqlQueries

DIALECTS = {
    "sqlite": sqlite.pysqlite.dialect,
    "aiosqlite": sqlite.aiosqlite.dialect,
    "psycopg2": postgresql.psycopg2.dialect,
    "asyncpg": postgresql.asyncpg.dialect,
    "pymysql": mysql.pymysql.dialect,
    "asyncmy": mysql.asyncmy.dialect,
}


@pytest.mark.parametrize("driver", sorted(DIALECTS))
def test_read_parameters_match_the_generic_binding(driver: str) -> None:
    dialect: Dialect = DIALECTS[driver]()
    read = SqlQueries(session_table(), dialect.name).read_statement
    compiled = CompiledStatement(read, dialect)
    now = datetime(2026, 11, 25, 19, 30, 0, 123456, tzinfo=UTC)
    expected = compiled.parameters({"key": "k" * 64, "now": now})
    bound = compiled.key_and_time_parameters()("k" * 64, to_us(now))  # the contract's µs
    assert bound == expected
    assert type(bound) is type(expected)
    values = list(bound.values()) if isinstance(bound, dict) else list(bound)
    if dialect.name != "postgresql":
        assert now not in values  # converted: naive UTC (MySQL) or text (SQLite)
