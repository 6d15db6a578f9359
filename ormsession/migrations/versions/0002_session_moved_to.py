"""Add session_moved_to: the moved markers a rename (regenerate) leaves under the old key.

Revision ID: 0002_session_moved_to
Revises: 0001_create_session
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0002_session_moved_to"
down_revision: str | None = "0001_create_session"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _table_name() -> str:
    return str(context.config.attributes.get("ormsession.table_name") or "session")


def upgrade() -> None:
    # Nullable, no default: existing rows are sessions (NULL), and adding the column
    # rewrites no row on PostgreSQL, MariaDB or SQLite.
    with op.batch_alter_table(_table_name()) as batch:
        batch.add_column(sa.Column("session_moved_to", sa.CHAR(64), nullable=True))


def downgrade() -> None:
    table = _table_name()
    # The older schema has no way to tell a marker from a session: it would read one as a
    # live session with empty data. Markers go first (their old keys become free again).
    moved_to: sa.ColumnClause[str] = sa.column("session_moved_to")
    op.execute(sa.table(table, moved_to).delete().where(moved_to.is_not(None)))
    with op.batch_alter_table(table) as batch:
        batch.drop_column("session_moved_to")
