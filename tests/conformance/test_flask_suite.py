"""Flask's own session tests, unmodified, against ormsession on every store.

Each store runs the 24 session tests of Flask 3.1.3's test suite (from its source
distribution, see :mod:`tests.conformance.sources`) in a subprocess, under Flask's own
pytest configuration (``filterwarnings = error``), with :mod:`tests.conformance.flask_plugin`
swapping ormsession's session interface into every app the tests create. All 24 must pass,
and exactly those 24 must run.

Left out, because they test client-side signing, which a server-side session does not do:
``test_missing_session`` (no ``SECRET_KEY`` must fail: ormsession needs none),
``test_session_secret_key_fallbacks`` (rotating the signing key),
``test_session_transactions_no_null_sessions`` (the same missing key, in the test client).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conformance.runner import outcomes, run_tests
from tests.conformance.sources import FLASK, unpacked
from tests.support.stores import target_for

FLASK_SESSION_TESTS = (
    "tests/test_basic.py::test_session_accessed",
    "tests/test_basic.py::test_session_path",
    "tests/test_basic.py::test_session_using_application_root",
    "tests/test_basic.py::test_session_using_session_settings",
    "tests/test_basic.py::test_session_using_samesite_attribute",
    "tests/test_basic.py::test_session_expiration",
    "tests/test_basic.py::test_session_stored_last",
    "tests/test_basic.py::test_session_special_types",
    "tests/test_basic.py::test_session_cookie_setting",
    "tests/test_basic.py::test_session_vary_cookie",
    "tests/test_basic.py::test_session_refresh_vary",
    "tests/test_basic.py::test_flashes",
    "tests/test_basic.py::test_extended_flashing",
    "tests/test_basic.py::test_app_freed_on_zero_refcount",
    "tests/test_helpers.py::TestStreaming::test_stream_keeps_session",
    "tests/test_helpers.py::TestStreaming::test_async_view",
    "tests/test_reqctx.py::TestGreenletContextCopying::test_greenlet_context_copying",
    "tests/test_reqctx.py::TestGreenletContextCopying::test_greenlet_context_copying_api",
    "tests/test_signals.py::test_flash_signal",
    "tests/test_templating.py::test_standard_context",
    "tests/test_testing.py::test_redirect_session",
    "tests/test_testing.py::test_session_transactions",
    "tests/test_testing.py::test_session_transactions_keep_context",
    "tests/test_converters.py::test_context_available",
)

#: The stores the suite runs on (names of ``tests.support.stores.STORE_TARGETS``).
STORES = ("memory", "sqlite", "postgresql", "mysql", "redis")


def run_flask_suite(
    env_options: dict[str, str], junit_xml: Path
) -> subprocess.CompletedProcess[str]:
    """Run the 24 tests in Flask's source tree with the plugin, the store named by
    ``env_options`` (``ORMSESSION_*`` variables)."""
    return run_tests(
        unpacked(FLASK),
        plugin="tests.conformance.flask_plugin",
        store_env=env_options,
        args=["-c", "pyproject.toml", "--timeout", "60", *FLASK_SESSION_TESTS],
        report=junit_xml,
        timeout=240,
    )


@pytest.mark.parametrize("store", STORES)
def test_flask_session_tests_pass(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    try:
        target = target_for(request, store)
    except pytest.skip.Exception as exc:  # CI has every service: a missing one is a failure
        pytest.fail(f"{store} is not available: {exc}")
    env_options = {"ORMSESSION_URL": target.url} | {
        f"ORMSESSION_{key.upper()}": str(value) for key, value in target.options.items()
    }
    junit_xml = tmp_path / "junit.xml"
    completed = run_flask_suite(env_options, junit_xml)
    if not junit_xml.exists():
        pytest.fail(
            f"Flask's tests did not run on {store} (exit {completed.returncode}):\n"
            f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )
    results = outcomes(junit_xml)
    assert sorted(results) == sorted(FLASK_SESSION_TESTS), "exactly the 24 session tests must run"
    failing = {test_id: outcome for test_id, outcome in results.items() if not outcome.passed}
    passed = len(results) - len(failing)
    report = "\n".join(
        f"  {test_id}\n    {outcome.message}" for test_id, outcome in failing.items()
    )
    if failing:
        pytest.fail(
            f"{store}: {passed}/{len(FLASK_SESSION_TESTS)} of Flask's session tests pass; "
            f"failing:\n{report}",
            pytrace=False,
        )
