"""A pytest plugin that runs Django's own session tests as Django's runner would.

Load it into a run of the generated module (``python -m pytest -p
tests.conformance.django_plugin``, Django's test tree and this project on ``PYTHONPATH``):
it sets Django up with :mod:`tests.conformance.django_settings`, then does what Django's
``DiscoverRunner`` does around a run: the test environment (the locmem mail backend,
template instrumentation) and the test databases, torn down at the end. pytest runs the
``TestCase`` classes through its unittest support, as it runs any unittest suite.

The store comes from ormsession's ordinary settings, ``ORMSESSION_URL`` and any other
``ORMSESSION_*`` variables.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

_databases: Any = None
_runner: Any = None


def pytest_configure(config: pytest.Config) -> None:
    global _databases, _runner
    if not os.environ.get("ORMSESSION_URL"):
        raise pytest.UsageError("django_plugin: set ORMSESSION_URL to the store to test")
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.conformance.django_settings"
    import django
    from django.test.runner import DiscoverRunner
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()
    _runner = DiscoverRunner(verbosity=0, interactive=False)
    _databases = _runner.setup_databases()


def pytest_unconfigure(config: pytest.Config) -> None:
    from django.test.utils import teardown_test_environment

    if _runner is not None:
        _runner.teardown_databases(_databases)
        teardown_test_environment()


def pytest_report_header(config: pytest.Config) -> str:
    return f"ormsession django_plugin: {os.environ.get('ORMSESSION_URL', '')}"
