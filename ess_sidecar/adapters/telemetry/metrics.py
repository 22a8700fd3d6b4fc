"""OpenTelemetry metrics and span annotations for the guard (the Telemetry port).

`decided` runs for every order, and a synchronous SDK instrument costs 5-10 µs per call
(benchmarks/telemetry_cost.py). So decisions, reports and transitions (trips, resets,
re-arms: a storm makes a hundred a second, each on the event loop) are counted in plain
ints (exact, a fraction of a microsecond) that observable counters export at collection
time, and the latency histogram records one decision in `latency_sample_every` (about 0.7
µs a decision on average at the default 8). Rare events (invalid requests, slow watchers,
refused calls) use ordinary synchronous counters.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections import Counter
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider, Observation
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry

from ...domain.breakers import Metric
from ...domain.decisions import Decision, DecisionReason
from ...domain.scopes import GLOBAL, Scope
from ...domain.states import Cause, State, Transition
from ...ports import AlertSink, GuardReadings, Telemetry
from ...settings import TelemetrySettings, otlp_exports
from . import names
from .gauges import GuardGauges, LoopReader, never_raising

log = logging.getLogger(__name__)

RESTRICTING = (State.TRIPPED, State.REDUCE_ONLY)
MAX_FIELDS = 100  # distinct `field` labels of ess.invalid_requests; then "other"


def meter_provider(settings: TelemetrySettings, resource: Resource,
                   registry: CollectorRegistry | None) -> SdkMeterProvider:
    """A meter provider exporting to `registry` (a private one per sidecar, served by
    MetricsServer) when given, and over OTLP/gRPC when the standard OTEL_EXPORTER_OTLP_*
    variables name an endpoint. Raises InvalidConfig for an OTLP protocol other than
    grpc (the only exporter installed). Shut it down with OtelTelemetry.shutdown."""
    readers: list[MetricReader] = []
    if registry is not None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader  # noqa: PLC0415
        # One meter: the otel_scope_* labels would only repeat "ess_sidecar" on every series.
        readers.append(PrometheusMetricReader(registry=registry, scope_info_enabled=False))
    if "METRICS" in otlp_exports(os.environ):
        readers.append(_otlp_reader())
    duration = View(instrument_name=names.DECISION_DURATION.name,
                    aggregation=ExplicitBucketHistogramAggregation(names.DURATION_BUCKETS_US))
    return SdkMeterProvider(metric_readers=readers, resource=resource, views=[duration],
                            exemplar_filter=AlwaysOffExemplarFilter(), shutdown_on_exit=False)


def _otlp_reader() -> MetricReader:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import \
        OTLPMetricExporter  # noqa: PLC0415 - gRPC exporter only when OTLP is configured
    # Endpoint, headers, TLS, timeout and OTEL_METRIC_EXPORT_INTERVAL come from the
    # standard variables, read by the exporter and the reader themselves.
    return PeriodicExportingMetricReader(OTLPMetricExporter())


class OtelTelemetry(Telemetry):
    """Metrics through an OpenTelemetry meter provider; span attributes and events on
    the current span when it is recorded. Call `observe` once the guard exists, and
    `shutdown` last (not the provider's own: this one first stops reading the guard)."""

    def __init__(self, settings: TelemetrySettings, meter_provider: MeterProvider) -> None:
        self._provider = meter_provider
        self._meter = meter = meter_provider.get_meter(names.METER_NAME)
        # The first decision is timed, then one in this many: the histogram has a series
        # from the first on (review 44d: none until the 8th)
        self._sample_every, self._countdown = settings.latency_sample_every, 1
        # Written only on the event loop; copied whole (under the GIL) by collections.
        self._decisions: dict[tuple[bool, DecisionReason], int] = {
            (reason is DecisionReason.ALLOWED, reason): 0 for reason in DecisionReason}
        self._reports = dict.fromkeys(Metric, 0)
        # By their labels: (kind, state, reason, breaker, drill), (kind, forced, drill),
        # (kind, previous state); bounded by the enums and the configured breakers.
        self._trips: Counter[tuple[str, str, str, str, bool]] = Counter()
        self._resets: Counter[tuple[str, bool, bool]] = Counter()
        self._rearms: Counter[tuple[str, str]] = Counter()
        self._scopes: dict[Scope, None] = {GLOBAL: None}  # ordered set, for the state gauge
        self._most_scopes = settings.max_gauge_scopes
        self._fields: set[str] = set()  # labels of ess.invalid_requests so far
        self._gauges: GuardGauges | None = None
        self._loop = LoopReader()  # the guard's loop, where the breakers are read
        self._duration = meter.create_histogram(
            names.DECISION_DURATION.name, unit=names.DECISION_DURATION.unit,
            description=names.DECISION_DURATION.description)
        self._slow, self._invalid, self._refused = (
            meter.create_counter(i.name, unit=i.unit, description=i.description)
            for i in (names.WATCH_SLOW_DISCONNECTS, names.INVALID_REQUESTS,
                      names.CALLS_REFUSED))
        self._slow.add(0)  # no attributes: shown at 0 from the start, not only once it counts
        for instrument, observe in ((names.DECISIONS, self._observe_decisions),
                                    (names.REPORTS, self._observe_reports),
                                    (names.TRIPS, self._observe_trips),
                                    (names.RESETS, self._observe_resets),
                                    (names.REARMS, self._observe_rearms)):
            meter.create_observable_counter(
                instrument.name, [never_raising(instrument, observe)], unit=instrument.unit,
                description=instrument.description)

    def observe(self, guard: GuardReadings, alerts: AlertSink,
                loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Export the gauges read from the guard (scope states, breakers, version,
        watchers) and the alert sink's counters. Call once. The breakers are read on the
        guard's event loop: `loop`, else the running one, else the one the first report
        or transition is told on (breakers have nothing to show before one)."""
        if self._gauges is not None:
            raise RuntimeError("OtelTelemetry.observe called twice")
        self._loop.loop = loop
        self._loop.bind_here()
        self._gauges = GuardGauges(guard, alerts, self._loop, self._scopes,
                                   self._most_scopes)
        self._gauges.register(self._meter)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop reading the guard, then flush (OTLP) and stop the meter provider."""
        if self._gauges is not None:
            self._gauges.detach()
        shutdown = getattr(self._provider, "shutdown", None)
        if shutdown is not None:
            try:
                shutdown(timeout_millis=timeout_s * 1000)
            except Exception:  # at shutdown: report, but let the sidecar stop
                log.exception("metrics shutdown failed")

    # -- the hot path ------------------------------------------------------------------------

    def decided(self, decision: Decision, elapsed_ns: int) -> None:
        key = (decision.allowed, decision.reason)
        try:
            self._decisions[key] += 1
        except KeyError:  # not a combination the engine makes today; still counted
            self._decisions[key] = 1
        self._countdown -= 1
        if self._countdown <= 0:
            self._countdown = self._sample_every
            self._duration.record(elapsed_ns / 1000)

    def annotate(self, decision: Decision) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        try:
            span.set_attributes({
                names.SPAN_DECISION_ALLOWED: decision.allowed,
                names.SPAN_DECISION_REASON: decision.reason.name,
                names.SPAN_DECISION_STATE_VERSION: decision.state_version,
                names.SPAN_DECISION_ID: decision.decision_id})
            if decision.blocking_scope is not None:
                span.set_attribute(names.SPAN_DECISION_BLOCKING_SCOPE,
                                   str(decision.blocking_scope))
        except Exception:
            log.exception("decision not put on the span")

    # -- rare paths --------------------------------------------------------------------------

    def transitions(self, transitions: Sequence[Transition]) -> None:
        try:
            self._loop.bind_here()
            span = trace.get_current_span()
            recording = span.is_recording()
            for transition in transitions:
                self._scopes.setdefault(transition.scope)
                self._count(transition)
                if recording:
                    span.add_event(names.EVENT_TRIP if transition.state in RESTRICTING
                                   else names.EVENT_TRANSITION, _event_attributes(transition))
        except Exception:
            log.exception("transitions not recorded in telemetry")

    def _count(self, t: Transition) -> None:
        kind = t.scope.kind.name
        if t.state in RESTRICTING:
            reason = t.reason_code.name if t.reason_code is not None else t.cause.name
            self._trips[kind, t.state.name, reason, t.breaker, t.drill] += 1
        elif t.cause is Cause.RESET:
            self._resets[kind, t.forced, t.drill] += 1
        elif t.cause is Cause.REARM:
            self._rearms[kind, t.previous.name] += 1

    def metric_reported(self, metric: Metric) -> None:
        self._loop.bind_here()
        try:
            self._reports[metric] += 1
        except KeyError:
            log.warning("unknown metric %r not counted", metric)

    def invalid_request(self, field: str) -> None:
        try:
            self._invalid.add(1, {names.FIELD: self._field_label(field)})
        except Exception:
            log.exception("invalid request not counted")

    def _field_label(self, field: str) -> str:
        # positions[3].mark_price -> positions[].mark_price: a label per field, not per
        # index, and a bounded number of labels whatever the callers pass.
        label = re.sub(r"\[\d+\]", "[]", field)[:64]
        if label not in self._fields:
            if len(self._fields) >= MAX_FIELDS:
                return "other"
            self._fields.add(label)
        return label

    def subscriber_dropped(self) -> None:
        try:
            self._slow.add(1)
        except Exception:
            log.exception("slow subscriber not counted")

    def call_refused(self, code: str) -> None:
        try:
            self._refused.add(1, {names.CODE: code})
        except Exception:
            log.exception("refused call not counted")

    # -- observable counters -----------------------------------------------------------------

    def _observe_decisions(self) -> list[Observation]:
        return [Observation(count, {names.ALLOWED: allowed, names.REASON: reason.name})
                for (allowed, reason), count in list(self._decisions.items())]

    def _observe_reports(self) -> list[Observation]:
        return [Observation(count, {names.METRIC: metric.name})
                for metric, count in list(self._reports.items())]

    def _observe_trips(self) -> list[Observation]:
        return [Observation(count, {names.SCOPE_KIND: kind, names.STATE: state,
                                    names.REASON: reason, names.BREAKER: breaker,
                                    names.DRILL: drill})
                for (kind, state, reason, breaker, drill), count in list(self._trips.items())]

    def _observe_resets(self) -> list[Observation]:
        return [Observation(count, {names.SCOPE_KIND: kind, names.FORCED: forced,
                                    names.DRILL: drill})
                for (kind, forced, drill), count in list(self._resets.items())]

    def _observe_rearms(self) -> list[Observation]:
        return [Observation(count, {names.SCOPE_KIND: kind, names.PREVIOUS_STATE: previous})
                for (kind, previous), count in list(self._rearms.items())]


def _event_attributes(t: Transition) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {
        names.EVENT_SCOPE: str(t.scope), names.EVENT_STATE: t.state.name,
        names.EVENT_PREVIOUS_STATE: t.previous.name, names.EVENT_CAUSE: t.cause.name,
        names.EVENT_REASON: t.reason, names.EVENT_VERSION: t.version}
    if t.reason_code is not None:
        attributes[names.EVENT_REASON_CODE] = t.reason_code.name
    if t.breaker:
        attributes[names.EVENT_BREAKER] = t.breaker
    return attributes

