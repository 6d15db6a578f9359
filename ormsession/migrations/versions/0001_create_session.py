"""Create the session table and its expiry index.

Revision ID: 0001_create_session
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import mysql

revision: str = "0001_create_session"
down_revision: str | None = None
# A named branch, so an app can also run this lineage inside its own Alembic history.
branch_labels: str | Sequence[str] | None = ("ormsession",)
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model's types (a migration must not change when the model does).
UTC_DATETIME = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
SESSION_BYTES = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


def _table_name() -> str:
    return str(context.config.attributes.get("ormsession.table_name") or "session")


def upgrade() -> None:
    table = _table_name()
    op.create_table(
        table,
        sa.Column("session_key", sa.CHAR(64), primary_key=True),
        sa.Column("session_data", SESSION_BYTES, nullable=False),
        sa.Column("session_expiry", UTC_DATETIME, nullable=False),
        sa.Column("session_created", UTC_DATETIME, nullable=False),
        sa.Column("session_version", sa.BigInteger(), nullable=False),
    )
    op.create_index(f"ix_{table}_session_expiry", table, ["session_expiry"])


def downgrade() -> None:
    table = _table_name()
    op.drop_index(f"ix_{table}_session_expiry", table_name=table)
    op.drop_table(table)
