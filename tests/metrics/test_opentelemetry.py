"""Metrics through OpenTelemetry: every instrument appears in the SDK's in-memory reader, as
documented, and nothing recorded (nor any log line of the same workload) carries a session
id, a storage key, a handle or a user id. OpenTelemetry is never imported unless asked for."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

import ormsession
from ormsession import Config, MissingDriverError
from ormsession.ids import storage_key
from ormsession.metrics import INSTRUMENTS, OpenTelemetryMetrics
from ormsession.settings import load_config

ROOT = Path(__file__).resolve().parents[2]
USER = "user-7f3a9c2e"


def recorded(reader: InMemoryMetricReader) -> dict[str, Any]:
    """The metrics collected so far, by name."""
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def everything_said(metrics: dict[str, Any], records: list[logging.LogRecord]) -> list[str]:
    """Every string a metrics backend or a log file would receive."""
    said: list[str] = []
    for metric in metrics.values():
        said += [metric.name, metric.unit, metric.description]
        for point in metric.data.data_points:
            said += [f"{k}={v}" for k, v in point.attributes.items()]
            said.append(repr(point))
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    said += [formatter.format(record) for record in records]
    return said


def secrets_of(ids: set[str], handles: set[str]) -> set[str]:
    """What must never be said: the ids (and any 8 characters of one), the storage keys
    (the logs' 8-character key prefix is the documented exception: any 16 characters of a
    key are refused), the handles, the user id."""
    pieces = {USER} | handles
    for session_id in ids:
        pieces |= {session_id[i : i + 8] for i in range(len(session_id) - 7)}
        key = storage_key(session_id)
        pieces |= {key[i : i + 16] for i in range(len(key) - 15)}
    return pieces


def workload(manager: Any, ids: set[str], handles: set[str]) -> None:
    """Requests that touch every metric: creates, reads, merges, a login, a user's list, a
    revoke, regenerates, a too-large save, a lost session, gc."""
    laptop = manager.open(None)
    laptop["cart"] = [1, 2, 3]
    manager.save(laptop)
    ids.add(laptop.id)
    manager.login(laptop, USER, user_agent="Firefox", ip="192.0.2.1")
    ids.add(laptop.id)
    manager.save(laptop)
    phone = manager.open(None)
    manager.login(phone, USER)
    manager.save(phone)
    ids.add(phone.id)
    handles.update(entry.handle for entry in manager.sessions_of(USER, current=laptop))
    first, second = manager.open(laptop.id), manager.open(laptop.id)
    first["a"], second["b"] = 1, 2
    manager.save(first)
    manager.save(second)  # a merge
    manager.regenerate(first)
    ids.add(first.id)
    manager.save(manager.open(laptop.id))  # the id that regenerate replaced
    mine, logout = manager.open(first.id), manager.open(first.id)
    manager.destroy(logout)
    mine["c"] = 3
    manager.save(mine)  # lost: destroyed meanwhile
    big = manager.open(None)
    ids.add(big.id)
    big["blob"] = "x" * 2000
    with pytest.raises(ormsession.SessionTooLargeError):
        manager.save(big)
    manager.revoke(USER, sorted(handles)[0])
    manager.revoke_all(USER)
    manager.count()
    manager.gc()


def test_metrics_reach_opentelemetry_and_say_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    ids: set[str] = set()
    handles: set[str] = set()
    caplog.set_level(logging.DEBUG)
    sink = OpenTelemetryMetrics(provider)
    with ormsession.configure("memory://", metrics=sink, max_data_bytes=1024) as manager:
        workload(manager, ids, handles)
    metrics = recorded(reader)
    provider.shutdown()
    assert len(ids) >= 5 and len(handles) == 2
    expected = set(INSTRUMENTS) - {"ormsession.store.errors"}  # the memory store never fails
    expected -= {"ormsession.gc.removed"}  # and nothing had expired
    assert expected <= set(metrics)
    for name, metric in metrics.items():
        spec = INSTRUMENTS[name]
        assert metric.unit == spec.unit
        points = metric.data.data_points
        assert all(point.attributes["ormsession.store"] == "memory" for point in points)
        if spec.kind == "histogram":
            assert all(isinstance(point, HistogramDataPoint) for point in points)
            assert all(tuple(point.explicit_bounds) == spec.buckets for point in points)
    said = everything_said(metrics, caplog.records)
    assert any("regenerated" in line for line in said)  # the logs were captured
    leaks = {piece for piece in secrets_of(ids, handles) for line in said if piece in line}
    assert not leaks


def test_the_opentelemetry_option_uses_the_global_meter_provider() -> None:
    script = """
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
import ormsession
manager = ormsession.configure("memory://", metrics="opentelemetry")
session = manager.open(None)
session["a"] = 1
manager.save(session)
data = reader.get_metrics_data()
print(sorted(m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=os.environ | {"PYTHONPATH": str(ROOT)},  # this checkout's ormsession
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    names = "['ormsession.session.size', 'ormsession.store.operation.duration']"
    assert done.stdout.strip() == names


@pytest.mark.parametrize(
    ("options", "imported"),
    [("", False), ("metrics=lambda event: None", False), ("metrics='opentelemetry'", True)],
)
def test_opentelemetry_is_imported_only_when_configured(options: str, imported: bool) -> None:
    script = f"""
import sys
from pathlib import Path
import ormsession
manager = ormsession.configure("memory://", {options})
session = manager.open(None)
session["a"] = 1
manager.save(session)
manager.save(manager.open(session.id))
print(any(name.split(".")[0] == "opentelemetry" for name in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=os.environ | {"PYTHONPATH": str(ROOT)},  # this checkout's ormsession
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == str(imported)


def test_without_opentelemetry_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name.split(".")[0] == "opentelemetry"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    with pytest.raises(MissingDriverError, match=r"ormsession\[otel\]"):
        Config(metrics="opentelemetry")
    with pytest.raises(MissingDriverError, match=r"ormsession\[otel\]"):
        OpenTelemetryMetrics()


def test_the_option_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORMSESSION_METRICS", "opentelemetry")
    assert load_config().metrics == "opentelemetry"
    monkeypatch.setenv("ORMSESSION_METRICS", "none")
    assert load_config().metrics is None
    monkeypatch.setenv("ORMSESSION_METRICS", "prometheus")
    with pytest.raises(ormsession.ConfigurationError, match="metrics"):
        load_config()
