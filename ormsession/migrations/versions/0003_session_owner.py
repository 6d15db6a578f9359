"""Add the session's owner (issue 28): the user a login bound it to, its handle, the user
agent and address of the login, when it was last written, and the index by user.

Revision ID: 0003_session_owner
Revises: 0002_session_moved_to
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import mysql

revision: str = "0003_session_owner"
down_revision: str | None = "0002_session_moved_to"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model's types (a migration must not change when the model does).
UTC_DATETIME = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _exact_text(length: int) -> sa.types.TypeEngine[str]:
    # utf8mb4 whatever the table's charset, compared case-sensitively (see types.exact_text).
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def _table_name() -> str:
    return str(context.config.attributes.get("ormsession.table_name") or "session")


def upgrade() -> None:
    table = _table_name()
    # Nullable, no default: existing rows are unbound sessions (and markers), and adding
    # the columns rewrites no row on PostgreSQL, MariaDB (10.3+: instant) or SQLite.
    with op.batch_alter_table(table) as batch:
        batch.add_column(sa.Column("session_user_id", _exact_text(255), nullable=True))
        batch.add_column(sa.Column("session_handle", _exact_text(32), nullable=True))
        batch.add_column(sa.Column("session_user_agent", _exact_text(512), nullable=True))
        batch.add_column(sa.Column("session_ip", _exact_text(45), nullable=True))
        batch.add_column(sa.Column("session_seen", UTC_DATETIME, nullable=True))
    op.create_index(f"ix_{table}_session_user_id", table, ["session_user_id", "session_expiry"])


def downgrade() -> None:
    table = _table_name()
    # The older schema has nowhere to keep an owner: bound sessions stay, unbound (a user's
    # "log out everywhere" cannot reach them until they log in again).
    op.drop_index(f"ix_{table}_session_user_id", table_name=table)
    with op.batch_alter_table(table) as batch:
        for column in (
            "session_seen",
            "session_ip",
            "session_user_agent",
            "session_handle",
            "session_user_id",
        ):
            batch.drop_column(column)
