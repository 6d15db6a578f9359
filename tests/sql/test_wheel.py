"""The migrations ship inside the wheel and run from an installed package, no checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ormsession.schema import HEAD_REVISION

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ormsession built into a wheel and installed into a bare directory."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("ormsession-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ormsession/migrations/env.py" in names
    assert "ormsession/migrations/versions/0001_create_session.py" in names
    assert "ormsession/migrations/versions/0002_session_moved_to.py" in names
    assert "ormsession/py.typed" in names
    site = out / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return site


def test_the_installed_package_migrates_a_database(installed: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    code = (
        "import ormsession, ormsession.schema as s; "
        f"assert ormsession.__file__.startswith({str(installed)!r}), ormsession.__file__; "
        f"s.upgrade({url!r}); print(s.current_revision({url!r}))"
    )
    environment = os.environ | {"PYTHONPATH": str(installed)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
    )
    assert done.stdout.strip() == HEAD_REVISION
    # and the command-line entry point from the same installed copy
    done = subprocess.run(
        [sys.executable, "-m", "ormsession", "db", "current", "--url", url],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
    )
    assert done.stdout.strip() == HEAD_REVISION
