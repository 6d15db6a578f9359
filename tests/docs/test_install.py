"""What `make demo`, `make test` and `make docs` install, and the install pages' commands."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = set(PYPROJECT["project"]["optional-dependencies"])
VERSION = PYPROJECT["project"]["version"]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def planned(target: str, tmp_path: Path) -> list[str]:
    """The commands `make <target>` would run on a fresh machine (a venv that does not exist
    yet), without running them."""
    done = subprocess.run(
        ["make", "-n", target, f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def installs(commands: list[str]) -> list[str]:
    return [line.split(" install ", 1)[1] for line in commands if " -m pip install " in line]


def test_make_demo_installs_the_core_only(tmp_path: Path) -> None:
    # The demo is a WSGI app on wsgiref and SQLite: no framework, no test tooling.
    assert installs(planned("demo", tmp_path)) == ["--quiet --upgrade pip", "--quiet -e ."]


def test_make_test_installs_the_dev_set_which_builds_the_docs(tmp_path: Path) -> None:
    assert installs(planned("test", tmp_path))[-1] == "--quiet -e '.[dev]'"
    dev = PYPROJECT["project"]["optional-dependencies"]["dev"]
    assert any(re.fullmatch(r"ormsession\[.*\bdocs\b.*\]", line) for line in dev)
    docs = PYPROJECT["project"]["optional-dependencies"]["docs"]
    assert any(line.startswith("mkdocs-material") for line in docs)


def test_make_docs_builds_the_site_strictly(tmp_path: Path) -> None:
    commands = planned("docs", tmp_path)
    assert installs(commands)[-1] == "--quiet -e '.[docs]'"
    assert any("mkdocs build --strict" in line for line in commands)


def install_section(page: Path) -> str:
    found = re.search(r"\n## Install\n(.*?)\n## ", page.read_text(), re.DOTALL)
    assert found, f"{page.name} has no Install section"
    return found.group(1)


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_the_install_section_works_without_pypi(page: str) -> None:
    section = install_section(ROOT / page)
    # From a checkout, and from wheels built once (ormsession is not on PyPI yet).
    assert "pip install '.[flask]'" in section
    assert "python -m pip wheel '.[" in section and "-w dist" in section
    assert "pip install --no-index --find-links dist 'ormsession[" in section
    assert "pip install 'ormsession[" not in section.replace("--find-links dist 'ormsession[", "")
    # The wheel it names is this version's, and every extra it names exists.
    for wheel in re.findall(r"ormsession-([\w.]+)-py3-none-any\.whl", section):
        assert wheel == VERSION
    named = set(re.findall(r"`([a-z-]+)`", section)) | {
        extra for group in re.findall(r"\[([a-z,-]+)\]", section) for extra in group.split(",")
    }
    assert named - {"flask"} and named <= EXTRAS, named - EXTRAS


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_the_install_section_names_every_extra(page: str) -> None:
    # docs/index.md's list had fallen behind pyproject.toml (no psycopg 3, Quart, Django...).
    named = set(re.findall(r"`([a-z-]+)`", install_section(ROOT / page)))
    assert EXTRAS - {"dev"} <= named, sorted(EXTRAS - {"dev"} - named)
