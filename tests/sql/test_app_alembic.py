"""ormsession's lineage inside an application's own Alembic environment (docs/migrations.md)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import create_engine, inspect, text

from ormsession import schema

APP_ENV = """
from alembic import context
from sqlalchemy import create_engine
import ormsession.schema

config = context.config
engine = create_engine(config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None,
                      include_object=ormsession.schema.include_object)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
"""

APP_REVISION = """
from alembic import op
import sqlalchemy as sa

revision = "app_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("orders", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("orders")
"""


def test_one_history_with_the_apps_own_alembic(tmp_path: Path) -> None:
    (tmp_path / "migrations" / "versions").mkdir(parents=True)
    (tmp_path / "migrations" / "env.py").write_text(APP_ENV)
    (tmp_path / "migrations" / "script.py.mako").write_text("")
    (tmp_path / "migrations" / "versions" / "app_0001.py").write_text(APP_REVISION)
    url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    ours = schema.migrations_path() / "versions"
    (tmp_path / "alembic.ini").write_text(
        textwrap.dedent(f"""
        [alembic]
        script_location = {tmp_path / "migrations"}
        version_locations = {tmp_path / "migrations" / "versions"} {ours}
        sqlalchemy.url = {url}
    """)
    )
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(tmp_path / "alembic.ini"), "upgrade", "heads"],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    engine = create_engine(url)
    with engine.connect() as connection:
        assert {"orders", "session", "alembic_version"} <= set(
            inspect(connection).get_table_names()
        )
        stamped = set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    assert stamped == {"app_0001", schema.HEAD_REVISION}
    schema.check_schema(engine)  # the start-up check finds ormsession's revision there too
    engine.dispose()


def test_include_object_keeps_ormsession_out_of_the_apps_autogenerate() -> None:
    assert not schema.include_object(None, "session", "table", True, None)
    assert not schema.include_object(None, "ormsession_alembic_version", "table", True, None)
    assert schema.include_object(None, "orders", "table", True, None)
