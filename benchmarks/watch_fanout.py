"""Trigger -> every WatchState subscriber: how long until each watcher has the transition.

A real sidecar subprocess (Unix socket, SQLite state, fsync on every transition) and N
watchers in this process. Each round sends Trigger(GLOBAL), notes when the call returns
(durable and acknowledged: the same-run reference) and when each watcher receives the
transition, then a forced Reset and waits for every watcher to see it too. Delivery is
measured from the moment the Trigger was sent. Budget (docs/design.md, "Performance budgets"):
every subscriber within 5 ms p99.
The watchers share this process's event loop, so the figures include their own reading.

    python benchmarks/watch_fanout.py [--watchers 20] [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import grpc

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc
from ess_sidecar.testing import SidecarProcess

GLOBAL = pb.Scope(kind=pb.SCOPE_KIND_GLOBAL)
BUDGET_MS = 5.0


async def watch(stub: pb_grpc.GuardServiceStub, arrivals: dict[int, list[int]],
                ready: asyncio.Event) -> None:
    async for message in stub.WatchState(pb.WatchStateRequest(scopes=[GLOBAL])):
        if message.kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END:
            ready.set()
        elif message.kind == pb.WATCH_EVENT_KIND_TRANSITION:
            arrivals.setdefault(message.version, []).append(time.perf_counter_ns())


async def wait_for(arrivals: dict[int, list[int]], version: int, watchers: int) -> None:
    while len(arrivals.get(version, ())) < watchers:
        await asyncio.sleep(0)  # yield to the watcher tasks; bounded by the caller's timeout


async def run(target: str, watchers: int, rounds: int) -> tuple[list[float], list[float]]:
    arrivals: dict[int, list[int]] = {}
    channel = grpc.aio.insecure_channel(target)
    stub = pb_grpc.GuardServiceStub(channel)
    ready = [asyncio.Event() for _ in range(watchers)]
    tasks = [asyncio.create_task(watch(stub, arrivals, r)) for r in ready]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 30)
    acks, deliveries = [], []
    for _ in range(rounds):
        sent = time.perf_counter_ns()
        reply = await stub.Trigger(pb.TriggerRequest(scope=GLOBAL, reason="fan-out bench"))
        acks.append((time.perf_counter_ns() - sent) / 1e6)
        await asyncio.wait_for(wait_for(arrivals, reply.state_version, watchers), 10)
        deliveries += [(t - sent) / 1e6 for t in arrivals[reply.state_version]]
        reset = await stub.Reset(pb.ResetRequest(scope=GLOBAL, reason="bench", force=True))
        await asyncio.wait_for(wait_for(arrivals, reset.state_version, watchers), 10)
    for task in tasks:
        task.cancel()
    await channel.close()
    return sorted(acks), sorted(deliveries)


def pct(samples: list[float], p: float) -> float:
    return samples[min(len(samples) - 1, int(p * len(samples)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ess-fanout-"))
    sidecar = SidecarProcess(workdir, "[policy]\nreset_cooldown_s = 0\n").start()
    try:
        acks, deliveries = asyncio.run(run(sidecar.uds_target, args.watchers, args.rounds))
    finally:
        sidecar.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{args.rounds} triggers, {args.watchers} watchers, Unix socket, fsync per transition")
    print(f"{'':32} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    print(f"{'Trigger acknowledged (reference)':32} {pct(acks, .5):7.2f} {pct(acks, .99):7.2f}"
          f" {acks[-1]:7.2f}")
    print(f"{'delivered to a watcher':32} {pct(deliveries, .5):7.2f}"
          f" {pct(deliveries, .99):7.2f} {deliveries[-1]:7.2f}")
    verdict = "OK" if pct(deliveries, .99) < BUDGET_MS else "OVER"
    print(f"budget: every subscriber within {BUDGET_MS:g} ms p99: {verdict}")


if __name__ == "__main__":
    main()
