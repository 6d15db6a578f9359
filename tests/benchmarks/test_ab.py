"""The in-process A/B (``python -m benchmarks.ab``) runs end to end: an older commit's package
imported beside this checkout's, both serving requests against the floor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.ab import BASE_PACKAGE, base_package, main

ROOT = Path(__file__).resolve().parents[2]


def _has_history() -> bool:
    result = subprocess.run(
        ["git", "rev-parse", "--verify", "HEAD"], cwd=ROOT, capture_output=True, check=False
    )
    return result.returncode == 0


pytestmark = pytest.mark.skipif(not _has_history(), reason="needs a git checkout")


def test_the_base_package_is_a_separate_copy_and_goes_away() -> None:
    import ormsession

    with base_package("HEAD") as name:
        assert name == BASE_PACKAGE
        base = __import__(name)
        from ormsession_base import manager as base_manager  # type: ignore[import-not-found]

        assert (
            base is not ormsession
            and Path(base.__file__).parent != Path(ormsession.__file__).parent
        )
        # Its modules import each other, never this checkout's.
        assert base_manager.SessionManager.__module__ == f"{BASE_PACKAGE}.manager"
        assert base_manager.SessionManager is not ormsession.SessionManager
    assert not [m for m in sys.modules if m.startswith(BASE_PACKAGE)]


def test_a_tiny_run_prints_the_paired_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--base", "HEAD", "--stores", "memory", "--requests", "starlette-read,flask-write"]
    assert main([*argv, "--rounds", "3", "--ops", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["memory", "starlette-read"],
        ["memory", "flask-write"],
    ]
    assert all("new/base" in line for line in lines)


def test_an_unknown_request_kind_is_refused() -> None:
    with pytest.raises(SystemExit):
        main(["--base", "HEAD", "--requests", "starlette-reed"])
