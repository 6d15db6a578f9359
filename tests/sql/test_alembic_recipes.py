"""docs/migrations.md's Alembic recipes, run as written against a freshly `alembic init`-ed app.

Each recipe's diffs are applied with ``patch`` to the files today's Alembic generates, and its
command block runs line by line, on PostgreSQL, MariaDB and SQLite. The test's own glue is
only what a real app has anyway: a database URL in alembic.ini and a model that grows a
table before each ``alembic revision --autogenerate``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from ormsession import schema

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "migrations.md"
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.parametrize(
    "fresh_database_url", ["sqlite", "postgresql", "mysql"], indirect=True
)

#: The app's model: one more table before each autogenerate.
APP_TABLES = ["orders", "customers", "invoices"]


def recipe(name: str) -> str:
    """The code block under ``<!-- recipe: name -->`` in docs/migrations.md."""
    found = re.search(rf"<!-- recipe: {name} -->\n```\w+\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert found, f"docs/migrations.md has no recipe {name!r}"
    return found.group(1)


def command_lines(name: str) -> list[list[str]]:
    lines = (shlex.split(line, comments=True) for line in recipe(name).splitlines())
    return [argv for argv in lines if argv]


@dataclass
class Step:
    argv: list[str]
    output: str
    tables: set[str]


@dataclass
class App:
    """An app directory made by the current ``alembic init``, on one database."""

    path: Path
    url: str
    model_tables: list[str] = field(default_factory=list)

    def run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        environment = os.environ | {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            # The checkout's ormsession, as an installed package would be.
            "PYTHONPATH": str(ROOT),
        }
        environment.pop("ORMSESSION_URL", None)
        done = subprocess.run(
            argv, cwd=self.path, env=environment, capture_output=True, text=True, timeout=120
        )
        if check:
            assert done.returncode == 0, f"{shlex.join(argv)}:\n{done.stdout}{done.stderr}"
        return done

    def apply(self, diff: str) -> None:
        subprocess.run(
            ["patch", "-p1", "--batch", "--forward"],
            input=diff,
            cwd=self.path,
            check=True,
            capture_output=True,
            text=True,
        )

    def grow_model(self, tables: int = 1) -> None:
        self.model_tables.extend(APP_TABLES[len(self.model_tables) :][:tables])
        tables = "".join(
            f'{name} = sa.Table("{name}", metadata, sa.Column("id", sa.Integer, primary_key=True))'
            "\n"
            for name in self.model_tables
        )
        (self.path / "models.py").write_text(
            f"import sqlalchemy as sa\n\nmetadata = sa.MetaData()\n{tables}"
        )

    def tables(self) -> set[str]:
        engine = create_engine(self.url)
        try:
            with engine.connect() as connection:
                return set(inspect(connection).get_table_names())
        finally:
            engine.dispose()

    def stamped(self) -> set[str]:
        engine = create_engine(self.url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(text("SELECT version_num FROM alembic_version"))
                return set(rows.scalars())
        finally:
            engine.dispose()

    def walk(self, name: str) -> list[Step]:
        """Run a command block line by line; each upgrade runs twice (the second must find
        nothing to do)."""
        steps: list[Step] = []
        for argv in command_lines(name):
            if argv[:3] == ["alembic", "revision", "--autogenerate"]:
                self.grow_model()
            output = self.run(argv)
            log = output.stdout + output.stderr
            if "upgrade" in argv:
                again = self.run(argv)
                assert "Running upgrade" not in again.stdout + again.stderr
            steps.append(Step(argv, log, self.tables()))
        return steps

    def revision_files(self) -> list[str]:
        return [path.read_text() for path in (self.path / "migrations" / "versions").glob("*.py")]


@pytest.fixture
def app(tmp_path: Path, fresh_database_url: str) -> App:
    app = App(tmp_path / "app", fresh_database_url)
    app.path.mkdir()
    app.run(["alembic", "init", "migrations"])
    ini = app.path / "alembic.ini"
    url_line = "sqlalchemy.url = " + fresh_database_url.replace("%", "%%")
    ini.write_text(re.sub(r"(?m)^sqlalchemy\.url = .*$", url_line, ini.read_text()))
    return app


def use_the_model(app: App) -> None:
    env = app.path / "migrations" / "env.py"
    source = env.read_text()
    assert "target_metadata = None\n" in source
    app.grow_model(0)
    env.write_text(
        source.replace(
            "target_metadata = None\n", "from models import metadata as target_metadata\n"
        )
    )


def step(steps: list[Step], command: str, nth: int = 0) -> Step:
    """The ``nth`` run of ``command`` (as written on the page)."""
    found = [done for done in steps if shlex.join(done.argv) == command]
    assert len(found) > nth, f"docs/migrations.md no longer runs {command!r}"
    return found[nth]


def test_two_lineages_one_command(app: App) -> None:
    app.apply(recipe("separate-env"))
    use_the_model(app)
    steps = app.walk("separate-commands")

    upgraded = step(steps, "alembic upgrade head")
    assert {"orders", "session", "ormsession_alembic_version"} <= upgraded.tables
    # Alembic's usual lines, for the app's revisions and ormsession's alike; ormsession's
    # table came with the first command that ran env.py online (as the page says).
    first = steps[0]
    assert first.argv[:3] == ["alembic", "revision", "--autogenerate"]
    assert "Running upgrade  -> 0001_create_session" in first.output
    assert "session" in first.tables
    assert "Running upgrade  -> " in upgraded.output and "create orders" in upgraded.output
    assert schema.current_revision(app.url) == schema.HEAD_REVISION
    assert "No new upgrade operations detected." in step(steps, "alembic check").output

    revisions = app.revision_files()
    assert len(revisions) == 2, "one app revision per autogenerate, in the app's directory"
    assert all("'session'" not in source and '"session"' not in source for source in revisions)
    assert {"customers", "orders"} <= step(steps, "alembic upgrade head", 1).tables

    downgraded = step(steps, "alembic downgrade base")
    assert downgraded.tables & {"orders", "customers"} == set()
    assert {"session", "ormsession_alembic_version"} <= downgraded.tables
    assert app.stamped() == set(), "ormsession's revision is never in the app's alembic_version"
    engine = create_engine(app.url)
    schema.check_schema(engine)  # ormsession's table is still at its head
    engine.dispose()


def test_one_history(app: App) -> None:
    app.apply(recipe("one-history-ini"))
    app.apply(recipe("one-history-env"))
    use_the_model(app)
    steps = app.walk("one-history-commands")

    first = step(steps, "alembic upgrade heads")
    assert "session" in first.tables and "ormsession_alembic_version" not in first.tables
    assert "Running upgrade 0001_create_session -> 0002_session_moved_to" in first.output
    labelled = [source for source in app.revision_files() if "'app'" in source or '"app"' in source]
    assert len(labelled) == 1, "the app's first revision starts the branch 'app'"
    assert "No new upgrade operations detected." in step(steps, "alembic check").output

    # What the page says about two heads.
    plain = app.run(["alembic", "revision", "-m", "unplaced"], check=False)
    assert plain.returncode != 0 and "Multiple heads are present" in plain.stdout + plain.stderr
    singular = app.run(["alembic", "upgrade", "head"], check=False)
    assert (
        singular.returncode != 0
        and "Multiple head revisions are present" in singular.stdout + singular.stderr
    )

    app_gone = step(steps, "alembic downgrade app@base")
    assert app_gone.tables & {"orders", "customers"} == set()
    assert "session" in app_gone.tables
    assert step(steps, "alembic downgrade ormsession@base").tables.isdisjoint({"session"})
    assert app.stamped() == set()


def test_the_one_history_stamp_passes_the_start_up_check(app: App) -> None:
    app.apply(recipe("one-history-ini"))
    app.apply(recipe("one-history-env"))
    app.run(["alembic", "upgrade", "heads"])
    assert app.stamped() == {schema.HEAD_REVISION}
    engine = create_engine(app.url)
    schema.check_schema(engine)
    engine.dispose()
