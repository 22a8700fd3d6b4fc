"""Memory per id, in process: 1,000,000 distinct ids through the guard, RSS as they go.

What `id_flood.py` measures over a real socket at a few hundred ids a second, this measures
at the guard itself (the service and engine, with the shipped limits but for exposure, off
so that orders of unknown accounts are allowed and reserve), fast enough for a million:
each id reports a metric for a new scope and sends an order under a new account, strategy
and symbol, which is then cancelled, with the clock stepping --step-ms per id and the timers
run every simulated 100 ms as the sidecar runs them. Every structure kept per id is exercised:
breaker evidence, rate windows, books, order ids. Baseline in the same run: RSS before the
first id. The journal is off (it is a file, not memory).

    python benchmarks/id_memory.py [--ids N] [--step-ms MS]
"""

from __future__ import annotations

import argparse
import logging
import resource
import time

from ess_sidecar.adapters.storage.memory import InMemoryStateStore
from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.config import GuardConfig
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.errors import CapacityExceeded
from ess_sidecar.domain.limits import LimitSettings
from ess_sidecar.domain.orders import Order, OrderStatus, OrderUpdate, Side
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.ports import Clock
from ess_sidecar.service import Guard
from ess_sidecar.watch import Subscribers

T0 = 1_790_000_000.0
KINDS = (ScopeKind.STRATEGY, ScopeKind.ACCOUNT, ScopeKind.SYMBOL)


class SteppedClock(Clock):
    def __init__(self) -> None:
        self.time = T0

    def now(self) -> float:
        return self.time


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--step-ms", type=float, default=1.0,
                        help="simulated time between ids: at 50 ms (20 ids/s) an hour of ids"
                        " stays under the cap, and idle evidence is forgotten after it")
    parser.add_argument("--idle-s", type=float, default=LimitSettings().idle_evidence_s,
                        help="limits.idle_evidence_s (at least the longest breaker window, 1 h)")
    args = parser.parse_args()
    ids, step_s = args.ids, args.step_ms / 1000
    logging.disable(logging.WARNING)  # the one GLOBAL trip at the cap, not a line per id
    limits = LimitSettings(exposure_enabled=False, order_id_retention_s=60.0,
                           idle_evidence_s=args.idle_s)
    clock = SteppedClock()
    engine = GuardEngine(GuardConfig(limits=limits))
    guard = Guard(engine, InMemoryStateStore(), clock, Subscribers(16))
    start = rss_mib()
    print(f"{ids:,} ids; RSS before the first: {start:.1f} MiB; cap on scopes with evidence:"
          f" {limits.max_scopes_with_evidence:,}; idle evidence forgotten after"
          f" {limits.idle_evidence_s:g} s; order ids kept {limits.order_id_retention_s:g} s;"
          f" {args.step_ms:g} ms between ids")
    print(f"{'ids':>10} {'RSS MiB':>8} {'scopes w/ evidence':>19} {'refused':>8}"
          f" {'allowed':>8} {'µs/id':>6}")
    refused = allowed = 0
    began = time.perf_counter()
    step = max(1, ids // 10)
    for n in range(ids):
        clock.time += step_s
        scope = Scope(KINDS[n % 3], f"flood-{n}")
        try:
            guard.report_metric(scope, Metric.API_ERROR, 1.0)
        except CapacityExceeded:
            refused += 1
        order = Order(f"acc-{n}", f"strat-{n}", f"SYM{n}", Side.BUY, 1.0, 100.0,
                      client_order_id=f"o-{n}")
        if guard.check(order).allowed:
            allowed += 1
            guard.report_order_update(OrderUpdate(order.account, order.client_order_id,
                                                  OrderStatus.CANCELLED))
        if n % max(1, round(0.1 / step_s)) == 0:  # every simulated 100 ms
            guard.run_timers()
        if (n + 1) % step == 0:
            per_id = (time.perf_counter() - began) / (n + 1) * 1e6
            print(f"{n + 1:>10,} {rss_mib():>8.1f} {len(engine.breakers):>19,} {refused:>8,}"
                  f" {allowed:>8,} {per_id:>6.0f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nRSS {start:.1f} MiB before, {rss_mib():.1f} after, peak {peak:.1f};"
          f" GLOBAL {engine.state_of(GLOBAL).name}")


if __name__ == "__main__":
    main()
