"""The sidecar's own work per decision, in-process: engine alone, and proto -> engine -> proto.

The mapping measured is the hot path's, CheckOrderStream: the order taken out of a parsed
CheckOrderStreamRequest, and the decision written into the stream's reused response and
serialized (so the figure counts one serialization a bare server pays too). Baseline in the
same run: parsing the stream request and serialising a prebuilt response, which a bare
server does too. Time advances 20 ms per call (an injected clock), so the per-strategy
rate limit (100/s) stays on without denying. The limits are the shipped ones (exposure on,
working-order caps, identical-order duplicates) unless a scenario says otherwise.

Every order has its own client_order_id and a price cycling within 1 % of the mark, so no
five are identical within the 1 s window. Off the timed path: each order is made (and, for
the engine alone, mapped) before the timer starts; an allowed one is cancelled
(ReportOrderUpdate) after it, so every decision of a scenario sees the same working orders;
and the engine's timers (which expire the identical-order window) run every 50 calls, once
a simulated second, as the sidecar runs them every 100 ms. Every decision is checked to be
the scenario's (allowed, or denied for the scenario's reason).

Scenarios: an order allowed through every limit (equity and three positions with their
marks known, no working orders); the same with 1,000 working orders on the account, over
3 strategies x 4 symbols, 12 legs (the account's cap raised to 2,000); the same over 1,000
legs, 100 strategies x 10 symbols (10 is the most symbols max_open_positions admits): the
shape that would cost the most if a check walked the legs (the book keeps its sums
current instead, so it should cost about what 12 legs cost); one allowed while another
strategy is tripped (the check then looks for tripped scopes whose ids look like its
own); one denied by a tripped scope; one denied by an exposure limit. Last, the service's check of an allowed order,
whose journal record is written before it returns.

    python benchmarks/decision_cost.py [--calls N]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ess.v1 import guard_pb2 as pb
from ess_sidecar.adapters.storage.journal import FileJournal
from ess_sidecar.adapters.storage.memory import InMemoryStateStore
from ess_sidecar.adapters.grpc.mapping import decision_to_stream_bytes, order_from_proto
from ess_sidecar.domain.commands import Trigger
from ess_sidecar.domain.config import GuardConfig
from ess_sidecar.domain.decisions import Decision
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.limits import LimitSettings
from ess_sidecar.domain.orders import Order, OrderStatus, OrderUpdate, PositionSnapshot, Side
from ess_sidecar.domain.scopes import Scope, ScopeKind
from ess_sidecar.domain.states import TriggerMode, TriggerReason
from ess_sidecar.ports import Clock
from ess_sidecar.service import Guard
from ess_sidecar.watch import Subscribers

BUDGET_US = 10.0
ACCOUNT = "ACC-1"
T0 = 1_700_000_000.0
STEP_S = 0.02  # simulated time per call: 50 orders/s per strategy, under the 100/s limit
TIMERS_EVERY = 50  # calls: once a simulated second
DISTINCT_PRICES = 10_000
ORDER = dict(account=ACCOUNT, strategy="STRAT-1", symbol="BTC-USD", side=pb.SIDE_BUY,
             quantity=1.0, price=100.0)
ALLOWED = pb.DECISION_REASON_ALLOWED


def engine_with_book(limits: LimitSettings = LimitSettings(),
                     marks: dict[str, float] | None = None) -> GuardEngine:
    """Equity 1,000,000 and three positions with their marks (plus zero-quantity positions
    carrying the marks of `marks`)."""
    engine = GuardEngine(GuardConfig(limits=limits))
    held = {("STRAT-1", "BTC-USD"): (10, 100.0), ("STRAT-1", "ETH-USD"): (5, 50.0),
            ("STRAT-2", "SOL-USD"): (-20, 10.0)}
    snapshot = [PositionSnapshot(s, sym, q, m) for (s, sym), (q, m) in held.items()]
    known = {sym for _, sym in held}
    snapshot += [PositionSnapshot("STRAT-1", sym, 0, m) for sym, m in (marks or {}).items()
                 if sym not in known]
    engine.sync_positions(ACCOUNT, 1_000_000.0, snapshot)
    return engine


def with_working_orders(count: int, strategies: int, symbols: int) -> tuple[GuardEngine, float]:
    """engine_with_book with `count` working orders on the account, round-robin over
    `strategies` x `symbols` legs, buys and sells of one unit at about the mark; the
    account's cap raised to 2 x count. Returns the engine and the time after the last."""
    marks = {"BTC-USD": 100.0, "ETH-USD": 50.0, "SOL-USD": 10.0,
             **{f"SYM-{n}": 20.0 + n for n in range(max(0, symbols - 3))}}
    names = list(marks)[:symbols]
    engine = engine_with_book(LimitSettings(max_working_orders_per_account=2 * count),
                              marks)
    legs = list(itertools.product([f"STRAT-{n + 1}" for n in range(strategies)], names))
    now = T0
    for i in range(count):
        strategy, symbol = legs[i % len(legs)]
        now += STEP_S
        side = Side.BUY if (i // len(legs)) % 2 else Side.SELL  # each leg both ways
        decision = engine.check(Order(
            ACCOUNT, strategy, symbol, side, 1.0,
            marks[symbol] * (1.0 + (i % 1000) * 1e-5), client_order_id=f"resting-{i}"), now)
        if not decision.allowed:
            raise AssertionError(f"setting up {count} working orders: order {i} {decision}")
    if engine.orders.per_account.get(ACCOUNT) != count:
        raise AssertionError(f"{engine.orders.per_account} working orders, not {count}")
    return engine, now


@dataclass
class Scenario:
    """An engine, the order it is sent (each call with a fresh id and price), and the
    reason every decision must have."""

    engine: GuardEngine
    expect: int | None = ALLOWED  # None: no decision to check (the baseline)
    order: dict = field(default_factory=lambda: dict(ORDER))
    now: float = T0
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _calls: int = 0

    def request(self) -> pb.CheckOrderStreamRequest:
        n = next(self._ids)
        price = self.order["price"] * (1.0 + (n % DISTINCT_PRICES) * 1e-6)
        return pb.CheckOrderStreamRequest(request_id=n, order=pb.CheckOrderRequest(
            **{**self.order, "price": price}, client_order_id=f"5f3a9c1e2b4d-{n}"))

    def after(self, stream_request: pb.CheckOrderStreamRequest, reason: int,
              now: float) -> None:
        """Off the timed path: check the decision, end the order, run the timers."""
        if self.expect is None:
            return
        request = stream_request.order
        if reason != self.expect:
            raise AssertionError(f"{request.client_order_id}: reason {reason}, expected"
                                 f" {self.expect}")
        if reason == ALLOWED and not self.engine.update_order(OrderUpdate(
                ACCOUNT, request.client_order_id, OrderStatus.CANCELLED)):
            raise AssertionError(f"{request.client_order_id} was not working")
        self._calls += 1
        if self._calls % TIMERS_EVERY == 0:
            self.engine.expire(now)
            self.engine.plan_timers(now)  # the plan (nothing to apply here) is dropped


def scenarios() -> dict[str, Scenario]:
    tripped = engine_with_book()
    plan = tripped.plan_trigger(Trigger(Scope(ScopeKind.STRATEGY, "STRAT-1"), TriggerMode.HALT,
                                        "bench", TriggerReason.USER_INITIATED, (), "bench"), 0.0)
    tripped.apply(plan.transitions)
    elsewhere = engine_with_book()  # a halt that covers another strategy: each check
    # looks for scopes whose ids look like its own (ids.skeleton) as well as its own
    plan = elsewhere.plan_trigger(Trigger(Scope(ScopeKind.STRATEGY, "OTHER-1"),
                                          TriggerMode.HALT, "bench", TriggerReason.USER_INITIATED,
                                          (), "bench"), 0.0)
    elsewhere.apply(plan.transitions)
    working, working_since = with_working_orders(1000, strategies=3, symbols=4)
    spread, spread_since = with_working_orders(1000, strategies=100, symbols=10)
    return {
        "allowed": Scenario(engine_with_book()),
        "allowed, 1,000 working orders (12 legs)": Scenario(working, now=working_since),
        "allowed, 1,000 working orders (1,000 legs)": Scenario(spread, now=spread_since),
        "allowed, another strategy tripped": Scenario(elsewhere),
        "denied: tripped scope": Scenario(tripped, pb.DECISION_REASON_SCOPE_TRIPPED),
        "denied: exposure": Scenario(engine_with_book(), pb.DECISION_REASON_SYMBOL_EXPOSURE,
                                     {**ORDER, "quantity": 5000.0}),
    }


def measure(scenario: Scenario, prepare: Callable[[pb.CheckOrderStreamRequest], object],
            call: Callable[[object, float], object], calls: int) -> list[int]:
    """Time `call(prepare(request), now)` per call; the rest is off the timed path."""
    samples = [0] * calls
    clock = time.perf_counter_ns
    for i in range(-(calls // 10), calls):  # a tenth of the calls first, as warm-up
        if i == 0:
            gc.collect()
            gc.disable()
        request = scenario.request()
        argument = prepare(request)
        scenario.now += STEP_S
        now = scenario.now
        start = clock()
        decision = call(argument, now)
        elapsed = clock() - start
        if i >= 0:
            samples[i] = elapsed
        scenario.after(request, int(decision.reason), now)
    gc.enable()
    return sorted(samples)


def order_of(request: pb.CheckOrderStreamRequest) -> Order:
    return order_from_proto(request.order)


def mapped(engine: GuardEngine) -> Callable[[pb.CheckOrderStreamRequest, float], Decision]:
    """What CheckOrderStream does with a parsed request: the order out of it, the engine's
    decision, the answer written into the stream's reused response and serialized."""
    response = pb.CheckOrderStreamResponse()

    def call(request: pb.CheckOrderStreamRequest, now: float) -> Decision:
        decision = engine.check(order_from_proto(request.order), now)
        decision_to_stream_bytes(response, request.request_id, decision)
        return decision
    return call


class SetClock(Clock):
    def __init__(self) -> None:
        self.time = T0

    def now(self) -> float:
        return self.time


def journaled(directory: Path, calls: int) -> list[int]:
    """The engine's decision plus what the service adds to an allowed one: its journal
    record, written to the kernel before the answer (fsync grouped, on another thread)."""
    scenario = Scenario(engine_with_book())
    journal = FileJournal(directory / "bench.journal")
    journal.load()
    journal.start()
    clock = SetClock()
    guard = Guard(scenario.engine, InMemoryStateStore(), clock, Subscribers(16),
                  journal=journal)

    def check(order: Order, now: float) -> object:
        clock.time = now
        return guard.check(order)

    try:
        return measure(scenario, order_of, check, calls)
    finally:
        journal.close()


def row(label: str, samples: list[int]) -> str:
    def pct(p: float) -> float:
        return samples[min(len(samples) - 1, int(p * len(samples)))] / 1000

    rate = len(samples) / (sum(samples) / 1e9)
    return f"{label:<60} {pct(.5):7.2f} {pct(.99):7.2f} {pct(.999):8.2f} {rate:11,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    calls = parser.parse_args().calls
    print(f"{'in-process, per decision':<60} {'p50 µs':>7} {'p99 µs':>7} {'p99.9 µs':>8}"
          f" {'calls/s':>11}")
    raw = pb.CheckOrderStreamRequest(request_id=123456, order=pb.CheckOrderRequest(
        **ORDER, client_order_id="5f3a9c1e2b4d-123456")).SerializeToString()
    prebuilt = pb.CheckOrderStreamResponse(request_id=123456, decision=pb.CheckOrderResponse(
        allowed=True, reason=pb.DECISION_REASON_ALLOWED, decision_id="5f3a9c1e-10000"))
    baseline = Scenario(GuardEngine(GuardConfig()), expect=None)
    print(row("baseline: parse request + serialise response", measure(
        baseline, lambda request: raw,
        lambda data, now: (pb.CheckOrderStreamRequest.FromString(data),
                           prebuilt.SerializeToString(), prebuilt.decision)[2], calls)))
    own, alone = {}, {}
    for name, scenario in scenarios().items():
        alone[name] = measure(scenario, order_of, scenario.engine.check, calls)
        print(row(f"engine.check, {name}", alone[name]))
        own[name] = measure(scenario, lambda request: request, mapped(scenario.engine), calls)
        print(row(f"mapping + engine + mapping, {name}", own[name]))
    with tempfile.TemporaryDirectory() as directory:
        print(row("guard.check + journal, allowed", journaled(Path(directory), calls)))
    print()
    for what, runs in (("the decision (engine.check)", alone),
                       ("the sidecar's own work (mapping + engine + mapping)", own)):
        worst_name = max(runs, key=lambda name: runs[name][len(runs[name]) // 2])
        worst = runs[worst_name][len(runs[worst_name]) // 2] / 1000
        verdict = "OK" if worst <= BUDGET_US else "OVER"
        print(f"{what}, worst p50: {worst:.2f} µs ({worst_name}; budget {BUDGET_US:g} µs)"
              f" {verdict}")

if __name__ == "__main__":
    main()
