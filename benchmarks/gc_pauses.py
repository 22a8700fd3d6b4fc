"""Python's cyclic garbage collector against the orders a busy sidecar remembers, in process.

Every order the sidecar allowed is remembered until `limits.order_id_retention_s` (a day)
after it ended, up to `limits.max_remembered_orders` (1,000,000): each is an `OrderRecord`,
an object the collector tracks. A full collection walks every tracked object, while the
decisions wait (one thread, one GIL), and CPython 3.11 runs one whenever the objects that
survived into the oldest generation have grown by a quarter since the last. So the pause
grows with what is remembered.

Method: a GuardEngine with the shipped limits, sent --orders allowed orders (each with its
own client_order_id, the simulated clock 20 ms further each, under the 100/s rate limit),
each cancelled (ReportOrderUpdate) right after its check, so the working orders stay few
and the remembered ones grow, as an executor's ended orders do. `gc.callbacks` time every
collection. Then the same with one policy tried and not shipped: `gc.freeze()` after each
full collection (what survived one is never walked again). It bounds the pauses, but
whatever lived through a freeze and later becomes garbage in a reference cycle is never
collected: a served unary call leaves about five objects in cycles (gRPC's), so the calls in
flight at each freeze leak, about once a second under load. Last, the policy the sidecar
ships (ess_sidecar/adapters/collector.py): freeze only after a full collection that took
longer than FREEZE_AFTER_S, a few times per million orders. For each policy: the freezes,
and the objects a last full collection finds unreachable once everything is unfrozen (what
the freezes would have kept: in this process, with no gRPC call in flight, about none).

    python benchmarks/gc_pauses.py [--orders N]
"""

from __future__ import annotations

import argparse
import gc
import time

from ess_sidecar.adapters.collector import FREEZE_AFTER_S, FreezeAfterLongCollections
from ess_sidecar.domain.config import GuardConfig
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.orders import Order, OrderStatus, OrderUpdate, PositionSnapshot, Side

ACCOUNT, STRATEGY, SYMBOL = "ACC-1", "STRAT-1", "BTC-USD"
T0, STEP_S = 1_700_000_000.0, 0.02


class Pauses:
    """Every collection's duration, by generation, from gc.callbacks; with `freeze`, the
    survivors of each full collection frozen."""

    def __init__(self, freeze: bool) -> None:
        self.freeze = freeze
        self.freezes = 0
        self.by_generation: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.by_generation[info["generation"]].append(time.perf_counter() - self._started)
        if self.freeze and info["generation"] == 2:
            gc.freeze()
            self.freezes += 1


POLICIES = ("CPython's defaults (before stop 50)", "tried: freeze after each full GC",
            f"shipped: freeze after one > {FREEZE_AFTER_S * 1000:g} ms")


def run(orders: int, policy: str) -> tuple[Pauses, int, float, int, int]:
    """The pauses, the freezes, the seconds the orders took, the objects tracked at the
    end, and the unreachable ones a full collection found once they were unfrozen."""
    engine = GuardEngine(GuardConfig())
    engine.sync_positions(ACCOUNT, 1e12, [PositionSnapshot(STRATEGY, SYMBOL, 0, 100.0)])
    gc.collect()
    pauses = Pauses(policy == POLICIES[1])
    gc.callbacks.append(pauses)
    shipped = FreezeAfterLongCollections().install() if policy == POLICIES[2] else None
    now = T0
    start = time.perf_counter()
    try:
        for n in range(orders):
            now += STEP_S
            order_id = f"5f3a9c1e2b4d-{n}"
            decision = engine.check(Order(ACCOUNT, STRATEGY, SYMBOL, Side.BUY, 1.0,
                                          100.0 * (1.0 + (n % 1000) * 1e-5),
                                          client_order_id=order_id), now)
            if not decision.allowed:
                raise AssertionError(f"order {n}: {decision}")
            engine.update_order(OrderUpdate(ACCOUNT, order_id, OrderStatus.CANCELLED))
        elapsed = time.perf_counter() - start
    finally:
        gc.callbacks.remove(pauses)
        if shipped is not None:
            shipped.uninstall()  # and unfreezes
    freezes = shipped.freezes if shipped is not None else pauses.freezes
    gc.unfreeze()  # the frozen, counted too
    tracked = len(gc.get_objects())
    return pauses, freezes, elapsed, tracked, gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000,
                        help="orders allowed and ended (the shipped cap on remembered ones:"
                        " 1,000,000)")
    orders = parser.parse_args().orders
    print(f"{orders:,} orders allowed and cancelled, remembered (in process)\n")
    print(f"{'policy':<36} {'objects':>9} {'full GCs':>8} {'full p50 ms':>11}"
          f" {'full max ms':>11} {'all GCs ms':>10} {'orders/s':>9} {'freezes':>7}"
          f" {'kept':>5}")
    for policy in POLICIES:
        pauses, freezes, elapsed, tracked, kept = run(orders, policy)
        full = sorted(pauses.by_generation[2])
        total = sum(sum(p) for p in pauses.by_generation.values())
        p50 = full[len(full) // 2] * 1000 if full else 0.0
        print(f"{policy:<36} {tracked:>9,} {len(full):>8} {p50:>11.1f}"
              f" {(full[-1] * 1000 if full else 0.0):>11.1f} {total * 1000:>10.0f}"
              f" {orders / elapsed:>9,.0f} {freezes:>7} {kept:>5}")
        gc.collect()


if __name__ == "__main__":
    main()
