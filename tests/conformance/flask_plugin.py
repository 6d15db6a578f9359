"""A pytest plugin that runs Flask's own test suite with ormsession's sessions.

Load it into a run of Flask's tests (``python -m pytest -p tests.conformance.flask_plugin``,
with this project on ``PYTHONPATH``): every ``Flask`` app those tests create gets
ormsession's session interface at the end of its ``__init__``, exactly what
``OrmSession(app)`` does in a user's app. Nothing else of Flask's tests changes.

The store comes from ormsession's ordinary settings, ``ORMSESSION_URL`` and any other
``ORMSESSION_*`` variables (a key prefix, ``ORMSESSION_AUTO_MIGRATE``), read once by
``ormsession.configure()``: one manager per run, shared by every app (as one process
shares one), closed when the run ends. The plugin keeps no reference to any app, so an app
is still freed as soon as the test drops it (``test_app_freed_on_zero_refcount``).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import pytest
from _pytest import compat as _pytest_compat
from _pytest import monkeypatch as _pytest_monkeypatch
from flask import Flask

import ormsession
from ormsession.integrations.flask import OrmSession
from ormsession.manager import SessionManager

_original_init = Flask.__init__
_manager: SessionManager | None = None


def _shared_manager() -> SessionManager:
    if _manager is None:  # pragma: no cover - pytest_configure always runs first
        raise RuntimeError("the flask_plugin was not configured")
    return _manager


@functools.wraps(_original_init)
def _init_with_ormsession(self: Flask, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    OrmSession(self, manager=_shared_manager())


def _restore_monkeypatch_notset() -> None:
    """Flask 3.1.3's conftest uses ``_pytest.monkeypatch.notset``, a name pytest 9 no longer
    has (it is ``_pytest.compat.NOTSET`` now, the sentinel ``MonkeyPatch.undo`` checks).
    Putting the name back is a shim for the pytest version, not a change to Flask's tests."""
    if not hasattr(_pytest_monkeypatch, "notset"):
        _pytest_monkeypatch.notset = _pytest_compat.NOTSET  # type: ignore[attr-defined]


def pytest_configure(config: pytest.Config) -> None:
    global _manager
    _restore_monkeypatch_notset()
    if not os.environ.get("ORMSESSION_URL"):
        raise pytest.UsageError("flask_plugin: set ORMSESSION_URL to the store to test")
    _manager = ormsession.configure()
    Flask.__init__ = _init_with_ormsession  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    global _manager
    Flask.__init__ = _original_init  # type: ignore[method-assign]
    if _manager is not None:
        _manager.close()
        _manager = None


def pytest_report_header(config: pytest.Config) -> str:
    return f"ormsession flask_plugin: {_shared_manager().config.url}"
