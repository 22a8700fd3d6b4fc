"""What the metrics telemetry costs per decision, in process: `OtelTelemetry.decided` and
`annotate`, against a bare function call and the OpenTelemetry SDK's own instruments; and
what a transition costs the event loop in telemetry (`OtelTelemetry.transitions`) and in
its JSON log line (the sidecar's handler, writing to /dev/null), as a storm makes a hundred
of each a second.

Each figure is the median over --batches batches of --calls calls (per-call time = batch
time / calls), so the timer's own cost is not counted. The meter provider exports to a
private Prometheus registry, as the sidecar's does; nothing scrapes it during the run.

    python benchmarks/telemetry_cost.py [--calls N] [--batches N]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from ess_sidecar.adapters.telemetry.logs import JSON_KEYS, UtcJsonFormatter, \
    _SidecarHandler  # noqa: E402
from ess_sidecar.adapters.telemetry.metrics import OtelTelemetry, meter_provider  # noqa: E402
from ess_sidecar.adapters.telemetry.resource import sidecar_resource  # noqa: E402
from ess_sidecar.domain.decisions import Decision, DecisionReason  # noqa: E402
from ess_sidecar.domain.scopes import Scope, ScopeKind  # noqa: E402
from ess_sidecar.domain.states import Cause, State, Transition, TriggerReason  # noqa: E402
from ess_sidecar.ports import NoTelemetry  # noqa: E402
from ess_sidecar.service import transition_fields  # noqa: E402
from ess_sidecar.settings import TelemetrySettings  # noqa: E402

ALLOWED = Decision(True, DecisionReason.ALLOWED, "", 7, None, "d-1")
EVERY = TelemetrySettings().latency_sample_every  # the default
DENIED = Decision(False, DecisionReason.SCOPE_TRIPPED, "tripped", 7,
                  Scope(ScopeKind.STRATEGY, "momo"), "d-2")
TRIP = Transition(7, 1.0, Scope(ScopeKind.STRATEGY, "storm-1"), State.ARMED, State.TRIPPED,
                  Cause.TRIGGER, "storm", "bench", reason_code=TriggerReason.USER_INITIATED)
RESET = Transition(8, 2.0, Scope(ScopeKind.STRATEGY, "storm-1"), State.TRIPPED, State.ARMED,
                   Cause.RESET, "storm", "bench", forced=True)


def per_call_us(call: Callable[[], object], calls: int, batches: int,
                settle: Callable[[], object] = lambda: None) -> float:
    """`settle` runs between batches, untimed."""
    clock = time.perf_counter_ns
    for _ in range(calls):  # warm-up
        call()
    times = []
    gc.disable()
    try:
        for _ in range(batches):
            settle()
            start = clock()
            for _ in range(calls):
                call()
            times.append((clock() - start) / calls)
    finally:
        gc.enable()
    return statistics.median(times) / 1000


def telemetry(sample_every: int) -> OtelTelemetry:
    settings = TelemetrySettings(latency_sample_every=sample_every)
    return OtelTelemetry(settings, meter_provider(settings, sidecar_resource(settings),
                                                  CollectorRegistry()))


def transition_logger() -> tuple[logging.Logger, _SidecarHandler]:
    """A logger of its own with the sidecar's JSON handler, writing to /dev/null."""
    handler = _SidecarHandler(open(os.devnull, "w"))  # noqa: SIM115 - closed with it
    handler.setFormatter(UtcJsonFormatter(list(JSON_KEYS)[:4], rename_fields=JSON_KEYS))
    logger = logging.getLogger("ess_sidecar.bench")
    logger.propagate = False
    logger.addHandler(handler)
    return logger, handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args()

    def bare(decision: Decision, elapsed_ns: int) -> None:
        pass

    sampled, every, never = telemetry(EVERY), telemetry(1), telemetry(10**9)
    off = NoTelemetry()
    meter = sampled._provider.get_meter("bench")  # noqa: SLF001 - the same provider's SDK
    counter = meter.create_counter("bench.counter")
    histogram = meter.create_histogram("bench.histogram")
    attributes = {"allowed": True, "reason": "ALLOWED"}
    tracer = TracerProvider().get_tracer("bench")
    rows: list[tuple[str, Callable[[], object]]] = [
        ("bare function call", lambda: bare(ALLOWED, 2500)),
        ("NoTelemetry.decided (telemetry off)", lambda: off.decided(ALLOWED, 2500)),
        ("OtelTelemetry.decided, count only (never sampled)",
         lambda: never.decided(ALLOWED, 2500)),
        (f"OtelTelemetry.decided, allowed (1 in {EVERY} sampled)",
         lambda: sampled.decided(ALLOWED, 2500)),
        (f"OtelTelemetry.decided, denied (1 in {EVERY} sampled)",
         lambda: sampled.decided(DENIED, 2500)),
        ("OtelTelemetry.decided, every one sampled", lambda: every.decided(ALLOWED, 2500)),
        ("OtelTelemetry.annotate, no span", lambda: sampled.annotate(DENIED)),
        ("SDK Counter.add(1, 2 attributes)", lambda: counter.add(1, attributes)),
        ("OtelTelemetry.transitions, a trip", lambda: sampled.transitions((TRIP,))),
        ("OtelTelemetry.transitions, a forced reset", lambda: sampled.transitions((RESET,))),
        ("SDK Histogram.record(x), no attributes", lambda: histogram.record(2.5)),
    ]
    print(f"{'per call, median of batches':<52} {'µs':>7}")
    for label, call in rows:
        print(f"{label:<52} {per_call_us(call, args.calls, args.batches):7.3f}")
    with tracer.start_as_current_span("CheckOrder"):  # a sampled (recording) span
        cost = per_call_us(lambda: sampled.annotate(DENIED), args.calls, args.batches // 10)
    print(f"{'OtelTelemetry.annotate, recording span':<52} {cost:7.3f}")
    logger, handler = transition_logger()
    try:  # fewer: the writer must keep up, or lines are dropped (and cost nothing)
        cost = per_call_us(lambda: logger.warning("transition", extra=transition_fields(TRIP)),
                           min(args.calls, handler.LINES // 2), max(3, args.batches // 10),
                           settle=lambda: handler.written(10))
    finally:
        logger.removeHandler(handler)
        handler.close()
    label = "a transition's JSON log line, where it is logged"
    print(f"{label:<52} {cost:7.3f}")


if __name__ == "__main__":
    main()
