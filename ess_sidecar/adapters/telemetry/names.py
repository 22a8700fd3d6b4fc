"""Every metric, attribute and span name the sidecar exports: stable, and listed in the README.

Renaming anything here breaks operators' dashboards and alerts: add, never rename. The
Prometheus endpoint shows each metric with dots as underscores, the unit as a suffix
("us" -> `_microseconds`; `{...}` annotations add nothing) and `_total` on counters.

`ess.decisions` counts every decision exactly; `ess.decision.duration` records the first, then one
decision in `telemetry.latency_sample_every` (default 8): a histogram record costs several
microseconds in the OpenTelemetry SDK, more than the decision itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

METER_NAME = "ess_sidecar"

# -- metric attributes (Prometheus labels); all bounded, never an order or decision id -----
ALLOWED = "allowed"  # bool
REASON = "reason"  # DecisionReason name; for trips the TriggerReason name, else the Cause name
SCOPE = "scope"  # "GLOBAL", "STRATEGY:momo": gauges only, for scopes ever restricted
SCOPE_KIND = "scope_kind"  # GLOBAL, ACCOUNT, STRATEGY, SYMBOL
STATE = "state"  # ARMED, REDUCE_ONLY, TRIPPED, COOLING_DOWN
PREVIOUS_STATE = "previous_state"
BREAKER = "breaker"  # breaker rule name ("daily_drawdown_pct"); "" when none
FORCED = "forced"  # bool
DRILL = "drill"  # bool: part of an essctl drill, not a real trip
METRIC = "metric"  # Metric name of a ReportMetric sample
FIELD = "field"  # the request field named by INVALID_ARGUMENT, indexes folded: "positions[]"
CODE = "code"  # the status a call was refused with: UNAUTHENTICATED, PERMISSION_DENIED


@dataclass(frozen=True)
class Instrument:
    name: str
    kind: str  # counter, histogram or gauge, as Prometheus shows it
    unit: str  # UCUM, as OpenTelemetry wants it
    attributes: tuple[str, ...]
    description: str

    def prometheus_name(self) -> str:
        """The name this metric has on the Prometheus endpoint (without the _bucket,
        _sum and _count of a histogram)."""
        unit = {"us": "microseconds", "s": "seconds"}.get(re.sub(r"\{.*\}", "", self.unit),
                                                          "")
        name = re.sub(r"[^a-zA-Z0-9:]+", "_", self.name)
        if unit and not name.endswith(f"_{unit}"):
            name += f"_{unit}"
        return name + "_total" if self.kind == "counter" else name


DECISIONS = Instrument(
    "ess.decisions", "counter", "{decision}", (ALLOWED, REASON),
    "orders judged by CheckOrder / CheckOrderStream (exact count)")
DECISION_DURATION = Instrument(
    "ess.decision.duration", "histogram", "us", (),
    "the sidecar's own time to judge one order, as the servicer times it; the first"
    " decision, then one in telemetry.latency_sample_every, is recorded")
SCOPE_STATE = Instrument(
    "ess.scope.state", "gauge", "1", (SCOPE, STATE),
    "1 for the scope's current state, 0 for the others; GLOBAL always, then at most"
    " `telemetry.max_gauge_scopes` (100) scopes restricted since start, newest first (those"
    " armed again dropped first)")
TRIPS = Instrument(
    "ess.trips", "counter", "{trip}", (SCOPE_KIND, STATE, REASON, BREAKER, DRILL),
    "transitions into TRIPPED or REDUCE_ONLY (triggers, breakers, lost heartbeats, system)")
RESETS = Instrument(
    "ess.resets", "counter", "{reset}", (SCOPE_KIND, FORCED, DRILL),
    "accepted operator resets; no trigger reason: a reset lifts a scope's latches, which"
    " trips of several reasons may have set (ess.trips counts those by reason)")
REARMS = Instrument(
    "ess.rearms", "counter", "{rearm}", (SCOPE_KIND, PREVIOUS_STATE),
    "automatic re-arms: re-arm delay elapsed (from COOLING_DOWN) or a breaker's auto_rearm")
BREAKER_VALUE = Instrument(
    "ess.breaker.value", "gauge", "", (SCOPE, BREAKER),
    "a breaker's current value (its own unit: %, events in window, losses, seconds)")
BREAKER_THRESHOLD = Instrument(
    "ess.breaker.threshold", "gauge", "", (SCOPE, BREAKER),
    "the value at which the breaker trips (value >= threshold)")
STATE_VERSION = Instrument(
    "ess.state.version", "gauge", "1", (),
    "the global state version: +1 on every transition")
WATCH_SUBSCRIBERS = Instrument(
    "ess.watch.subscribers", "gauge", "{subscriber}", (),
    "open WatchState streams")
WATCH_SLOW_DISCONNECTS = Instrument(
    "ess.watch.slow_disconnects", "counter", "{subscriber}", (),
    "WatchState subscribers cut off for falling too far behind")
REPORTS = Instrument(
    "ess.reports", "counter", "{report}", (METRIC,),
    "ReportMetric samples accepted (exact count)")
INVALID_REQUESTS = Instrument(
    "ess.invalid_requests", "counter", "{request}", (FIELD,),
    "requests rejected with INVALID_ARGUMENT, by the field named")
CALLS_REFUSED = Instrument(
    "ess.calls_refused", "counter", "{call}", (CODE,),
    "calls refused by authentication or authorization, by status")
ALERTS_SENT = Instrument(
    "ess.alerts.sent", "counter", "{alert}", (), "alerts delivered")
ALERTS_FAILED = Instrument(
    "ess.alerts.failed", "counter", "{alert}", (), "alerts given up on after their retries")
ALERTS_RETRIED = Instrument(
    "ess.alerts.retried", "counter", "{attempt}", (), "failed alert attempts retried")
ALERTS_DROPPED = Instrument(
    "ess.alerts.dropped", "counter", "{alert}", (),
    "alerts never attempted: queue full, or not yet sent at shutdown")
ALERTS_MERGED = Instrument(
    "ess.alerts.merged", "counter", "{alert}", (),
    "alerts of renewed trips merged into one like it still waiting to be sent")

INSTRUMENTS = (DECISIONS, DECISION_DURATION, SCOPE_STATE, TRIPS, RESETS, REARMS,
               BREAKER_VALUE, BREAKER_THRESHOLD, STATE_VERSION, WATCH_SUBSCRIBERS,
               WATCH_SLOW_DISCONNECTS, REPORTS, INVALID_REQUESTS, CALLS_REFUSED, ALERTS_SENT,
               ALERTS_FAILED, ALERTS_RETRIED, ALERTS_DROPPED, ALERTS_MERGED)

# Explicit histogram buckets, microseconds: the budget is 10 µs of own work per decision.
DURATION_BUCKETS_US = (1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0,
                       100.0, 200.0, 500.0, 1000.0)

# -- span attributes and events (traces) ---------------------------------------------------
SPAN_DECISION_ALLOWED = "ess.decision.allowed"
SPAN_DECISION_REASON = "ess.decision.reason"
SPAN_DECISION_STATE_VERSION = "ess.decision.state_version"
SPAN_DECISION_BLOCKING_SCOPE = "ess.decision.blocking_scope"
SPAN_DECISION_ID = "ess.decision.id"
EVENT_TRIP = "ess.trip"  # a transition into TRIPPED or REDUCE_ONLY
EVENT_TRANSITION = "ess.transition"  # any other transition (reset, re-arm)
EVENT_SCOPE = "ess.scope"
EVENT_STATE = "ess.state"
EVENT_PREVIOUS_STATE = "ess.previous_state"
EVENT_CAUSE = "ess.cause"
EVENT_REASON = "ess.reason"  # the free text given with the transition
EVENT_REASON_CODE = "ess.reason_code"  # TriggerReason name, for triggers
EVENT_BREAKER = "ess.breaker"
EVENT_VERSION = "ess.version"


def markdown_table() -> str:
    """The README's table of metrics."""
    rows = ["| name (Prometheus) | type | unit | attributes | meaning |",
            "|---|---|---|---|---|"]
    for i in INSTRUMENTS:
        attributes = ", ".join(f"`{a}`" for a in i.attributes) or "–"
        rows.append(f"| `{i.name}` (`{i.prometheus_name()}`) | {i.kind} | `{i.unit or '–'}`"
                    f" | {attributes} | {i.description} |")
    return "\n".join(rows)
