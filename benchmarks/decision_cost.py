"""The sidecar's own work per decision, in-process: engine alone, and proto -> engine -> proto.

Baseline in the same run: parsing the request and serialising a prebuilt response, which a
bare server does too. Time advances 20 ms per call (an injected clock), so the per-strategy
rate limit (100/s) stays on without denying. Scenarios: an order allowed through every
limit (exposure on, equity and three positions known), one denied by a tripped scope, one
denied by an exposure limit.

    python benchmarks/decision_cost.py [--calls N]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

from ess.v1 import guard_pb2 as pb
from ess_sidecar.adapters.grpc.mapping import decision_to_proto, order_from_proto
from ess_sidecar.domain.config import GuardConfig
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.orders import PositionSnapshot
from ess_sidecar.domain.scopes import Scope, ScopeKind
from ess_sidecar.domain.states import TriggerMode, TriggerReason

BUDGET_US = 10.0
ORDER = dict(account="ACC-1", strategy="STRAT-1", symbol="BTC-USD", side=pb.SIDE_BUY,
             quantity=1.0, price=100.0, client_order_id="bench-order")


def engine_with_book() -> GuardEngine:
    engine = GuardEngine(GuardConfig())
    engine.sync_positions("ACC-1", 1_000_000.0, [
        PositionSnapshot("STRAT-1", "BTC-USD", 10, 100.0),
        PositionSnapshot("STRAT-1", "ETH-USD", 5, 50.0),
        PositionSnapshot("STRAT-2", "SOL-USD", -20, 10.0)])
    return engine


def scenarios() -> dict[str, tuple[GuardEngine, pb.CheckOrderRequest]]:
    tripped = engine_with_book()
    plan = tripped.plan_trigger(Scope(ScopeKind.STRATEGY, "STRAT-1"), TriggerMode.HALT, "bench",
                                TriggerReason.USER_INITIATED, (), "bench", 0.0)
    tripped.apply(plan.transitions)
    return {"allowed": (engine_with_book(), pb.CheckOrderRequest(**ORDER)),
            "denied: tripped scope": (tripped, pb.CheckOrderRequest(**ORDER)),
            "denied: exposure": (engine_with_book(), pb.CheckOrderRequest(
                **{**ORDER, "quantity": 5000.0}))}


def measure(call: Callable[[float], object], calls: int) -> list[int]:
    samples = [0] * calls
    clock = time.perf_counter_ns
    now = 1_700_000_000.0
    for _ in range(calls // 10):  # warm-up
        now += 0.02
        call(now)
    gc.disable()
    try:
        for i in range(calls):
            now += 0.02
            start = clock()
            call(now)
            samples[i] = clock() - start
    finally:
        gc.enable()
    return sorted(samples)


def row(label: str, samples: list[int]) -> str:
    def pct(p: float) -> float:
        return samples[min(len(samples) - 1, int(p * len(samples)))] / 1000

    rate = len(samples) / (sum(samples) / 1e9)
    return f"{label:<44} {pct(.5):7.2f} {pct(.99):7.2f} {pct(.999):8.2f} {rate:11,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    calls = parser.parse_args().calls
    print(f"{'in-process, per decision':<44} {'p50 µs':>7} {'p99 µs':>7} {'p99.9 µs':>8}"
          f" {'calls/s':>11}")
    raw = pb.CheckOrderRequest(**ORDER).SerializeToString()
    prebuilt = pb.CheckOrderResponse(allowed=True, reason=pb.DECISION_REASON_ALLOWED,
                                     decision_id="5f3a9c1e-10000")
    baseline = measure(lambda now: (pb.CheckOrderRequest.FromString(raw),
                                    prebuilt.SerializeToString()), calls)
    print(row("baseline: parse request + serialise response", baseline))
    own = {}
    for name, (engine, request) in scenarios().items():
        print(row(f"engine.check, {name}", measure(
            lambda now, e=engine, r=order_from_proto(request): e.check(r, now), calls)))
        own[name] = measure(lambda now, e=engine, r=request: decision_to_proto(
            e.check(order_from_proto(r), now)), calls)
        print(row(f"mapping + engine + mapping, {name}", own[name]))
    worst = max(s[len(s) // 2] for s in own.values()) / 1000
    verdict = "OK" if worst <= BUDGET_US else "OVER"
    print(f"\nsidecar's own work per decision, worst p50: {worst:.2f} µs"
          f" (budget {BUDGET_US:g} µs) {verdict}")


if __name__ == "__main__":
    main()
