"""What a Trigger or a forced Reset costs the sidecar's event loop, in process, no gRPC.

A guard built as `ess-sidecar serve` builds it (bootstrap.build: a real SQLite state file
and journal in a temporary directory, JSON logs to a file, telemetry as shipped), driven
on a uvloop event loop by `Guard.run_async`, as the servicer drives it: --commands of
them, alternately Trigger and forced Reset of one of 20 strategy scopes (100 a second is
benchmarks/storm.py's storm). Printed: the event loop's own CPU per command (its thread's
CPU time), and the wall time per command (the store's thread and the journal's syncer
write meanwhile). Commands are what stall checks during a storm; the store's writes run
in a thread of their own, so a command's cost to the checks is its time on the loop.

    python benchmarks/command_cost.py [--commands 3000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

import uvloop

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import workload  # noqa: E402
from ess_sidecar import bootstrap  # noqa: E402
from ess_sidecar.adapters.telemetry.logs import configure_logging, flush  # noqa: E402
from ess_sidecar.domain.commands import Trigger  # noqa: E402
from ess_sidecar.domain.scopes import Scope, ScopeKind  # noqa: E402
from ess_sidecar.domain.states import TriggerMode, TriggerReason  # noqa: E402
from ess_sidecar.service import Guard  # noqa: E402
from ess_sidecar.settings import load_settings  # noqa: E402

SCOPES = [Scope(ScopeKind.STRATEGY, f"storm-{i}") for i in range(20)]
WARMUP = 100


async def command(guard: Guard, n: int) -> None:
    scope = SCOPES[n // 2 % len(SCOPES)]
    if n % 2 == 0:
        await guard.run_async(guard.trigger_steps(Trigger(
            scope, TriggerMode.HALT, "storm", TriggerReason.USER_INITIATED, (), "bench")))
    else:
        await guard.run_async(guard.reset_steps(scope, "storm", True, "bench"))


async def measure(guard: Guard, commands: int) -> tuple[float, float]:
    """Loop CPU and wall time per command, µs."""
    for n in range(WARMUP):
        await command(guard, n)
    wall, cpu = time.perf_counter(), time.thread_time()
    for n in range(commands):
        await command(guard, n)
    return ((time.thread_time() - cpu) / commands * 1e6,
            (time.perf_counter() - wall) / commands * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3, help="each with a fresh state file")
    args = parser.parse_args()
    print(f"{'run':<5} {'loop CPU µs/command':>20} {'wall µs/command':>16}")
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as tmp:
            with open(f"{tmp}/ess.toml", "w") as f:
                f.write(workload.config(1000))
            settings = load_settings(f"{tmp}/ess.toml", store={"path": f"{tmp}/ess.db"})
            with open(f"{tmp}/log", "w") as log:
                configure_logging(settings.telemetry.log_format,
                                  settings.telemetry.log_level, log)
                app = bootstrap.build(settings)
                try:
                    cpu, wall = uvloop.run(measure(app.guard, args.commands))
                finally:
                    app.journal.close()
                    app.store.close()
                    flush()
        print(f"{run:<5} {cpu:>20.0f} {wall:>16.0f}")


if __name__ == "__main__":
    main()
