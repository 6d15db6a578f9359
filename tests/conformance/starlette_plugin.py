"""A pytest plugin that runs Starlette's own session tests against ormsession.

Loaded with ``-p starlette_plugin`` (this directory on ``PYTHONPATH``: Starlette's sdist
has a ``tests`` package of its own, so the plugin cannot be imported as ``tests.…``) by
``test_starlette_suite.py``. Before any test module is imported, it puts ormsession's ASGI
middleware where Starlette's tests import ``SessionMiddleware`` from, so ``from
starlette.middleware.sessions import SessionMiddleware`` hands them ormsession's. Nothing
else of Starlette's tests changes. The store is the one a switching app would name:
``ORMSESSION_URL`` and the other ``ORMSESSION_*`` variables, which the harness sets.
"""

from __future__ import annotations

import os

import pytest
import starlette.middleware.sessions

import ormsession
from ormsession.integrations.asgi import SessionMiddleware

if not os.environ.get("ORMSESSION_URL"):
    # Without it the middleware would write the default SQLite file into Starlette's tree.
    raise pytest.UsageError("starlette_plugin: set ORMSESSION_URL to the store to test")

starlette.middleware.sessions.SessionMiddleware = SessionMiddleware  # type: ignore[misc,assignment]


def pytest_report_header() -> list[str]:
    scheme = os.environ["ORMSESSION_URL"].split(":", 1)[0]
    return [f"ormsession {ormsession.__file__} as SessionMiddleware, store {scheme}://"]
