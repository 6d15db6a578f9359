"""The documentation builds as a site with no broken link, anchor or fence (mkdocs.yml)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").rglob("*.md"))
#: An opening fence: three or more backticks or tildes, then an optional info string.
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """--strict turns every warning into a failure: a link to a missing page or heading, a
    page left out of the nav, a nav entry with no page."""
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "index.html").exists()
    assert (tmp_path / "migrations" / "index.html").exists()


def unclosed_fences(text: str) -> list[str]:
    """CommonMark's rule: a fence closes only on a line of the same character, at least as
    long, with nothing after it but spaces. Anything else leaves the block open, and the
    rest of the page renders as code."""
    problems: list[str] = []
    opened: tuple[int, str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        found = FENCE.match(line)
        if found is None:
            continue
        fence, info = found["fence"], found["info"]
        if opened is None:
            opened = (number, fence)
        elif fence[0] == opened[1][0] and len(fence) >= len(opened[1]):
            if info.strip():
                problems.append(f"line {number}: text after a closing fence: {line.strip()!r}")
            else:
                opened = None
    if opened is not None:
        problems.append(f"line {opened[0]}: the fence opened here never closes")
    return problems


@pytest.mark.parametrize(
    "page", [*PAGES, ROOT / "README.md"], ids=lambda path: str(path.relative_to(ROOT))
)
def test_every_code_fence_closes(page: Path) -> None:
    assert unclosed_fences(page.read_text()) == []


def test_the_fence_check_finds_what_broke_the_sql_page() -> None:
    broken = "text\n```python\nx = 1\n``` Schedule `ormsession gc` (cron,\nmore\n"
    assert unclosed_fences(broken) == [
        "line 4: text after a closing fence: '``` Schedule `ormsession gc` (cron,'",
        "line 2: the fence opened here never closes",
    ]
    assert unclosed_fences("````md\n```\n````\n") == []  # a shorter fence inside a longer one


def test_every_page_is_in_the_nav() -> None:
    """mkdocs reports pages left out of the nav (omitted_files: warn); this names them."""
    nav = (ROOT / "mkdocs.yml").read_text()
    listed = set(re.findall(r"^\s*-\s[^:\n]+:\s(\S+\.md)\s*$", nav, re.MULTILINE))
    assert {str(page.relative_to(ROOT / "docs")) for page in PAGES} <= listed
