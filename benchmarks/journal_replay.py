"""What the journal costs: recording an allowed order, and replaying records at start-up.

The journal is a real file in a temporary directory, fsynced by its own thread every 10 ms
(the default). Recorded: N allowed orders, each later filled (two records an order), as
`Guard` records them. Replayed: the same file loaded (chain verified, records decoded) and
redone into a fresh engine, as a restart does. Baseline in the same run: reading the file's
bytes, and encoding each order record with the general JSON codec instead of the hot path's.

    python benchmarks/journal_replay.py [--orders N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ess_sidecar.adapters.storage.journal import FileJournal, _plain
from ess_sidecar.domain.commands import Admitted, FillReported
from ess_sidecar.domain.config import GuardConfig
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.limits import LimitSettings
from ess_sidecar.domain.orders import Fill, Order, Side
from ess_sidecar.recovery import replay

T0 = 1_790_000_000.0


def commands(orders: int) -> list:
    made = []
    for n in range(orders):
        order = Order("ACC-1", f"STRAT-{n % 7}", f"SYM-{n % 50}", Side.BUY if n % 2 else Side.SELL,
                      1.0, 100.0 + n % 13, client_order_id=f"5f3a9c1e2b4d-{n}")
        made.append(Admitted(order, T0 + n * 0.001, f"d-{n}"))
        made.append(FillReported(Fill("ACC-1", order.strategy, order.symbol, order.side, 1.0,
                                      order.price, order.client_order_id, f"x-{n}"),
                                 T0 + n * 0.001 + 0.0005))
    return made


def per(label: str, seconds: float, count: int) -> None:
    print(f"{label:<52} {seconds / count * 1e6:8.2f} µs {count / seconds:12,.0f}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=50_000)
    orders = parser.parse_args().orders
    made = commands(orders)
    admitted = [c for c in made if isinstance(c, Admitted)]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.journal"
        journal = FileJournal(path)
        journal.load()
        journal.start()
        start = time.perf_counter()
        for command in admitted:
            journal.record(command)
        per("record an allowed order (write(2), fsync grouped)",
            time.perf_counter() - start, len(admitted))
        start = time.perf_counter()
        for command in admitted:
            json.dumps(["Admitted", _plain(command), []], separators=(",", ":")).encode()
        per("baseline: its general JSON encoding alone", time.perf_counter() - start,
            len(admitted))
        for command in made:
            if isinstance(command, FillReported):
                journal.record(command)
        journal.close()
        start = time.perf_counter()
        path.read_bytes()
        per("baseline: read the file", time.perf_counter() - start, len(made))
        start = time.perf_counter()
        entries = FileJournal(path).load()
        loaded = time.perf_counter() - start
        per("load: verify the chain and decode", loaded, len(entries))
        engine = GuardEngine(GuardConfig(limits=LimitSettings(
            max_working_orders_per_account=0, max_working_orders_per_strategy=0)))
        start = time.perf_counter()
        replay(engine, entries)
        redone = time.perf_counter() - start
        per("replay into a fresh engine", redone, len(entries))
        per("start-up, load + replay", loaded + redone, len(entries))
        print(f"\n{len(entries):,} records, {path.stat().st_size / len(entries):.0f} bytes"
              " a record")


if __name__ == "__main__":
    main()
