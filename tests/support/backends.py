"""What every backend fixture shares: skip locally, fail in CI, when a backend is missing."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_BACKENDS = os.environ.get("ORMSESSION_REQUIRE_BACKENDS") == "1"


def backend_missing(reason: str) -> NoReturn:
    """Skip the test, or fail it under CI (ORMSESSION_REQUIRE_BACKENDS=1), where a silently
    skipped backend would hide a broken environment."""
    if REQUIRE_BACKENDS:
        pytest.fail(f"{reason} (ORMSESSION_REQUIRE_BACKENDS=1)", pytrace=False)
    pytest.skip(reason)
