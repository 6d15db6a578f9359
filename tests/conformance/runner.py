"""Running a framework's own tests in its unpacked source tree, and reading their outcome.

Both conformance suites run ``python -m pytest`` in the framework's source tree (its own
pytest configuration applies) with a plugin of ours that swaps ormsession in, and the store
given only by ``ORMSESSION_*`` variables; what happened is read from a JUnit XML report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PROJECT", "Outcome", "node_id_of", "outcomes", "run_tests"]

PROJECT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Outcome:
    passed: bool
    #: Empty when passed; else the kind (failure, error, skipped), the reason and the end
    #: of the traceback.
    message: str


def run_tests(
    source: Path,
    *,
    plugin: str,
    store_env: Mapping[str, str],
    args: Sequence[str],
    report: Path,
    timeout: float,
    path: Sequence[Path] = (),
) -> subprocess.CompletedProcess[str]:
    """Run the framework's tests ``args`` in ``source`` with ``-p plugin``, the store named
    by ``store_env`` alone (no ``ORMSESSION_*`` variable of the caller leaks in), this
    project (and ``path``) importable, the outcome written to ``report``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ORMSESSION_")}
    env |= dict(store_env) | {"PYTHONPATH": os.pathsep.join(map(str, [*path, PROJECT]))}
    command = [
        *(sys.executable, "-m", "pytest", "-p", plugin, "-p", "no:cacheprovider", "-q"),
        *(f"--junitxml={report}", "-o", "junit_family=xunit2", *args),
    ]
    return subprocess.run(
        command, cwd=source, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def node_id_of(classname: str, name: str) -> str:
    """``tests.test_helpers.TestStreaming`` + ``test_async_view`` as a pytest node id."""
    parts = classname.split(".")
    module = next(i for i, part in enumerate(parts) if part.startswith("test_"))
    path = "/".join(parts[: module + 1]) + ".py"
    return "::".join([path, *parts[module + 1 :], name])


def outcomes(report: Path) -> dict[str, Outcome]:
    """Each test case of a JUnit XML report, by pytest node id."""
    found: dict[str, Outcome] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        problem = next(
            (child for child in case if child.tag in ("failure", "error", "skipped")), None
        )
        message = ""
        if problem is not None:
            trace = (problem.text or "").strip().splitlines()
            message = f"{problem.tag}: {problem.get('message', '')}"
            if trace:
                message += "\n      " + "\n      ".join(trace[-8:])
        node_id = node_id_of(case.get("classname", ""), case.get("name", ""))
        found[node_id] = Outcome(problem is None, message)
    return found
