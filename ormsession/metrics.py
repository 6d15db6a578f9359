"""Metrics: what the managers measure, as small typed events for a callback or OpenTelemetry.

Nothing here runs unless the ``metrics`` option is set: a manager without it times nothing
and builds no event (its store calls go straight to the repository). With it, every event
goes to one *sink*, a callable taking a :class:`MetricEvent`: the app's own function, or
:class:`OpenTelemetryMetrics`, which records into OpenTelemetry instruments (``metrics=
"opentelemetry"`` builds one on the global meter provider).

Privacy: an event's attributes are a few fixed, low-cardinality names (the operation, the
store kind, an error's class name, an outcome); never a session id, a storage key, a handle,
a user id or an error's message (which may name a key or a host). The table of every
metric is :data:`INSTRUMENTS` (and docs/metrics.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from ormsession.errors import MissingDriverError

if TYPE_CHECKING:
    from ormsession.policy import StoreCall

__all__ = [
    "INSTRUMENTS",
    "Instrument",
    "MetricEvent",
    "MetricSink",
    "MetricsRecorder",
    "OpenTelemetryMetrics",
    "store_kind",
]

logger = logging.getLogger("ormsession")

#: Attribute names (OpenTelemetry's ``error.type`` for the failure's class).
STORE = "ormsession.store"
OPERATION = "ormsession.operation"
OUTCOME = "ormsession.outcome"
FLOW = "ormsession.flow"
DROPPED = "ormsession.changes_dropped"
ERROR_TYPE = "error.type"


class Instrument(NamedTuple):
    """How one metric is recorded: a counter (values add up) or a histogram (each value is
    a sample), its unit (UCUM, as OpenTelemetry writes it) and what it counts."""

    kind: Literal["counter", "histogram"]
    unit: str
    description: str
    attributes: tuple[str, ...]
    #: Histogram bucket boundaries suggested to OpenTelemetry (its default ones, 0 to
    #: 10000, fit neither seconds nor bytes).
    buckets: tuple[float, ...] = ()


_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BYTES = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)

#: Every metric ormsession emits, by name.
INSTRUMENTS: Mapping[str, Instrument] = {
    "ormsession.store.operation.duration": Instrument(
        "histogram",
        "s",
        "Time one store operation took, failures included",
        (STORE, OPERATION, ERROR_TYPE),
        _SECONDS,
    ),
    "ormsession.store.errors": Instrument(
        "counter",
        "{error}",
        "Store operations that raised, by the exception's class",
        (STORE, OPERATION, ERROR_TYPE),
    ),
    "ormsession.session.size": Instrument(
        "histogram",
        "By",
        "Serialized size of the session data written (before encryption)",
        (STORE, OPERATION),
        _BYTES,
    ),
    "ormsession.session.too_large": Instrument(
        "counter",
        "{session}",
        "Saves refused because the data was over max_data_bytes",
        (STORE,),
    ),
    "ormsession.conflicts": Instrument(
        "counter",
        "{conflict}",
        "Compare-and-set writes that lost to another request, by what followed",
        (STORE, OPERATION, OUTCOME),
    ),
    "ormsession.sessions.lost": Instrument(
        "counter",
        "{session}",
        "Sessions another request destroyed or regenerated while this one ran",
        (STORE, FLOW, DROPPED),
    ),
    "ormsession.gc.removed": Instrument(
        "counter", "{session}", "Expired sessions deleted by gc", (STORE,)
    ),
}


@dataclass(frozen=True, slots=True)
class MetricEvent:
    """One measurement: ``name`` (a key of :data:`INSTRUMENTS`), ``value`` (seconds,
    bytes or a count) and ``attributes`` (fixed names, short values: no ids, no keys)."""

    name: str
    value: float
    attributes: Mapping[str, str]

    @property
    def instrument(self) -> Instrument:
        """How to record it: counter or histogram, unit, description."""
        return INSTRUMENTS[self.name]


#: What receives the events: any callable (it runs on the request's thread or event loop,
#: so it should be quick; an exception from it is logged once and never fails a request).
MetricSink = Callable[[MetricEvent], None]


def store_kind(repository: object) -> str:
    """The ``ormsession.store`` attribute for ``repository``: its ``store_kind`` (every
    shipped store has one: ``sqlite``, ``postgresql``, ``redis``...), else its class name."""
    kind = getattr(repository, "store_kind", None)
    return kind if isinstance(kind, str) and kind else type(repository).__name__


class MetricsRecorder:
    """What a manager (and its policy) call to emit events, for one store: it adds the
    store's kind to every event and keeps a failing sink from failing requests."""

    def __init__(self, sink: MetricSink, store: str) -> None:
        self.sink = sink
        self.store = store
        self._store_only = MappingProxyType({STORE: store})
        # One attributes mapping per (operation, error type), made once (as OpenTelemetry
        # advises: recording with a mapping it has seen is its fast path).
        self._operations: dict[tuple[str, str | None], Mapping[str, str]] = {}
        self._sink_failed = False

    def emit(self, name: str, value: float, attributes: Mapping[str, str]) -> None:
        try:
            self.sink(MetricEvent(name, value, attributes))
        except Exception:
            if not self._sink_failed:  # once: a broken sink must not flood the logs either
                self._sink_failed = True
                logger.exception("the metrics sink failed; later failures are not logged")

    def _operation(self, operation: str, error: str | None = None) -> Mapping[str, str]:
        attributes = self._operations.get((operation, error))
        if attributes is None:
            made = {STORE: self.store, OPERATION: operation}
            if error is not None:
                made[ERROR_TYPE] = error
            # Read-only: a sink that changed it would change every later event's.
            attributes = self._operations[(operation, error)] = MappingProxyType(made)
        return attributes

    def store_call(self, operation: str, seconds: float, error: BaseException | None) -> None:
        if error is None:
            self.emit("ormsession.store.operation.duration", seconds, self._operation(operation))
            return
        # The class name only: an error's message may name a key, a host or a user.
        attributes = self._operation(operation, type(error).__qualname__)
        self.emit("ormsession.store.operation.duration", seconds, attributes)
        self.emit("ormsession.store.errors", 1, attributes)

    def session_size(self, operation: str, size: int) -> None:
        self.emit("ormsession.session.size", size, self._operation(operation))

    def too_large(self) -> None:
        self.emit("ormsession.session.too_large", 1, self._store_only)

    def conflict(
        self, operation: Literal["update", "rename"], outcome: Literal["retried", "lost", "gave_up"]
    ) -> None:
        attributes = {STORE: self.store, OPERATION: operation, OUTCOME: outcome}
        self.emit("ormsession.conflicts", 1, attributes)

    def lost(self, flow: Literal["open", "save", "regenerate", "login"], *, dropped: bool) -> None:
        attributes = {STORE: self.store, FLOW: flow, DROPPED: "true" if dropped else "false"}
        self.emit("ormsession.sessions.lost", 1, attributes)

    def gc_removed(self, count: int) -> None:
        self.emit("ormsession.gc.removed", count, self._store_only)

    # -- timing the store calls ------------------------------------------------------
    def timed(self, call_store: Callable[[StoreCall], Any]) -> Callable[[StoreCall], Any]:
        """A manager's ``perform``: ``call_store``, timed (sync)."""
        clock = time.perf_counter

        def perform(call: StoreCall) -> Any:
            started = clock()
            try:
                result = call_store(call)
            except Exception as exc:
                self.store_call(call.method, clock() - started, exc)
                raise
            self.store_call(call.method, clock() - started, None)
            return result

        return perform

    def timed_async(
        self, call_store: Callable[[StoreCall], Awaitable[Any]]
    ) -> Callable[[StoreCall], Awaitable[Any]]:
        """:meth:`timed` for an asyncio manager."""
        clock = time.perf_counter

        async def perform(call: StoreCall) -> Any:
            started = clock()
            try:
                result = await call_store(call)
            except Exception as exc:
                self.store_call(call.method, clock() - started, exc)
                raise
            self.store_call(call.method, clock() - started, None)
            return result

        return perform


class OpenTelemetryMetrics:
    """A sink recording each event into an OpenTelemetry instrument (one per metric of
    :data:`INSTRUMENTS`), made from ``meter_provider`` (default: the global one, so set
    the SDK's provider up first). Needs the ``otel`` extra (``opentelemetry-api``)."""

    def __init__(self, meter_provider: Any = None) -> None:
        try:
            from opentelemetry import metrics as otel_metrics
        except ImportError as exc:
            raise MissingDriverError(
                "metrics='opentelemetry' needs opentelemetry-api: "
                "pip install 'ormsession[otel]' (and an SDK or distro to export them)"
            ) from exc
        from ormsession import __version__

        provider = meter_provider or otel_metrics.get_meter_provider()
        meter = provider.get_meter("ormsession", __version__)
        self._record: dict[str, Callable[..., None]] = {}
        for name, spec in INSTRUMENTS.items():
            if spec.kind == "counter":
                counter = meter.create_counter(name, unit=spec.unit, description=spec.description)
                self._record[name] = counter.add
            else:
                histogram = meter.create_histogram(
                    name,
                    unit=spec.unit,
                    description=spec.description,
                    explicit_bucket_boundaries_advisory=list(spec.buckets),
                )
                self._record[name] = histogram.record

    def __call__(self, event: MetricEvent) -> None:
        self._record[event.name](event.value, event.attributes)


def make_sink(option: object) -> MetricSink | None:
    """The sink the ``metrics`` option names: None, ``"opentelemetry"``, or a callable."""
    if option is None:
        return None
    if option == "opentelemetry":
        return OpenTelemetryMetrics()
    if callable(option):
        return option
    from ormsession.errors import ConfigurationError

    raise ConfigurationError("metrics must be 'opentelemetry', a callable, or None")
