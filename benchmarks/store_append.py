"""What one store write costs with many scopes latched, pruning on and off.

The SQLite store on a real file, in process: `--latched` scopes tripped first (in appends
of 1,000, unpruned, as a burst of trips would leave them), then `--appends` writes of one
transition each (a trip and a reset of one more scope, alternately), each timed. Per
combination of latched count and `store.keep_events`; the baseline is the same writes with
nothing latched, measured in the same run. Every write fsyncs (synchronous=FULL) and
writes the seal, as the sidecar's do.

    python benchmarks/store_append.py [--latched 0 20000 40000] [--keep-events 0 100]
                                      [--appends 400]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ess_sidecar.adapters.storage.sqlite import SqliteStateStore  # noqa: E402
from ess_sidecar.domain.scopes import Scope, ScopeKind  # noqa: E402
from ess_sidecar.domain.states import Cause, State, Transition  # noqa: E402

BURST = 1000  # transitions per append while the latched scopes are tripped


def transition(version: int, scope: Scope, state: State) -> Transition:
    previous = State.TRIPPED if state is State.ARMED else State.ARMED
    return Transition(version=version, time=1_700_000_000.0 + version, scope=scope,
                      previous=previous, state=state, cause=Cause.TRIGGER,
                      reason="store_append.py", actor="benchmark")


def measure(directory: str, latched: int, keep_events: int, appends: int) -> list[float]:
    store = SqliteStateStore(os.path.join(directory, f"ess-{latched}-{keep_events}.db"),
                             keep_events)
    store.load()
    version = 0
    for start in range(0, latched, BURST):
        burst = [transition(version + i, Scope(ScopeKind.STRATEGY, f"burst-{start + i}"),
                            State.TRIPPED) for i in range(1, min(BURST, latched - start) + 1)]
        store.append(burst, prune=False)
        version += len(burst)
    hot, seconds = Scope(ScopeKind.STRATEGY, "hot"), []
    for i in range(appends):
        version += 1
        write = [transition(version, hot, State.ARMED if i % 2 else State.TRIPPED)]
        started = time.perf_counter()
        store.append(write)
        seconds.append(time.perf_counter() - started)
    store.close()
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latched", type=int, nargs="+", default=[0, 20_000, 40_000])
    parser.add_argument("--keep-events", type=int, nargs="+", default=[0, 100])
    parser.add_argument("--appends", type=int, default=400, help="timed writes each")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # "a new state store is created": each is new here
    counts = sorted({0, *args.latched})
    print(f"{args.appends} writes of one transition each, SQLite on {tempfile.gettempdir()}")
    print("| latched | keep_events | p50 ms | p90 ms | p99 ms | p50 / nothing latched |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="ess-store-append-") as directory:
        for keep_events in args.keep_events:
            baseline = None
            for latched in counts:
                seconds = sorted(measure(directory, latched, keep_events, args.appends))
                p50 = statistics.median(seconds)
                baseline = baseline or p50

                def at(q: float, s: list[float] = seconds) -> float:
                    return s[min(len(s) - 1, int(q * len(s)))] * 1e3

                print(f"| {latched:,} | {keep_events} | {p50 * 1e3:.2f} | {at(0.9):.2f} |"
                      f" {at(0.99):.2f} | {p50 / baseline:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
