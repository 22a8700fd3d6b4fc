"""How long a stop takes to be acknowledged while one client loads the sidecar the ways
reviews found slowed it (review 45), against the same sidecar quiet, in the same run.

Each scenario starts a real sidecar process (its own state file and journal, authentication
off), measures `Trigger` on its Unix socket quiet (a new strategy each time, every 0.2 s),
then under the load, then once the load has stopped, and prints p50, p99 and the worst
of each phase, with the sidecar's CPU during the load:

- `stale-feeds`: --scopes symbols each tick a data feed once (window 2 s) and go stale: as
  many latched scopes; the stop is measured once they are all latched (a timer run used to
  walk every one of them, ten times a second, and each append read every latch for the
  seal);
- `unchecked-fills`: 200 calls in flight over TCP, each a fill for an account the sidecar
  never allowed an order on, each tripping that account (`unchecked_order`), for --seconds;
- `watch-flood`: 256 `WatchState` calls in flight over TCP, each naming --scopes scopes,
  opened again as each is answered or refused, for --seconds (they were mapped before the
  watcher cap refused them);
- `state-reads`: --scopes strategies tripped (before the quiet phase), each with a 1 KB
  reason, then 8 `GetState` calls in flight over TCP (dashboards), each asked again as it is answered, for --seconds
  (review 49a: each answer, 22 MB for 20,000 scopes, was built in one piece on the event
  loop);
- `heartbeat-lists`: --scopes executors registered (heartbeats with an hour's TTL, before
  the quiet phase), then 8 `GetState(include_heartbeats)` calls in flight over TCP, each
  asked again as it is answered, for --seconds (reviews 56c, 56d: the 1,000 longest
  silent were picked in one piece, 18 ms on the event loop at 100,000);
- `new-feeds`: 32 calls in flight over TCP, each the first tick of a data feed never seen
  (a new symbol each time; window an hour), for --seconds (review 58d: each first tick
  was stored in its command's turn, an fsync each, and every command and check waited
  behind them; a timer run now stores those since the last in one write).

    python benchmarks/stop_under_load.py [--scenario NAME ...] [--seconds S] [--scopes N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any
from pathlib import Path

import grpc

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pbg
from ess_sidecar.testing import SidecarProcess

STALE_WINDOW_S = 2.0
QUIET_TRIGGERS = 20
IN_FLIGHT = {"unchecked-fills": 200, "watch-flood": 256, "state-reads": 8,
             "heartbeat-lists": 8, "new-feeds": 32}
REASON = "r" * 1000  # state-reads: each tripped scope's reason


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stops:
    """Triggers of new strategies on one channel, each timed."""

    def __init__(self, stub: pbg.GuardServiceStub) -> None:
        self.stub = stub
        self.sent = 0

    async def one(self) -> float:
        self.sent += 1
        scope = pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id=f"stop-{self.sent}")
        started = time.perf_counter()
        await self.stub.Trigger(pb.TriggerRequest(scope=scope, reason="benchmark"),
                                timeout=120)
        return time.perf_counter() - started

    async def during(self, seconds: float | None, count: int | None = None) -> list[float]:
        """Stops every 0.2 s for `seconds`, or `count` of them."""
        taken: list[float] = []
        ends = time.monotonic() + seconds if seconds is not None else None
        while (ends is None or time.monotonic() < ends) and (count is None
                                                               or len(taken) < count):
            taken.append(await self.one())
            await asyncio.sleep(0.2)
        return taken


def summary(name: str, taken: list[float]) -> str:
    ordered = sorted(taken)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"  {name:<14} {len(taken):>4} stops  p50 {statistics.median(ordered) * 1e3:8.1f} ms"
            f"  p99 {p99 * 1e3:8.1f} ms  worst {ordered[-1] * 1e3:8.1f} ms")


async def each(count: int, call: Callable[[int], Awaitable[object]]) -> None:
    """call(0) .. call(count - 1), 64 in flight."""
    room = asyncio.Semaphore(64)

    async def one(index: int) -> None:
        async with room:
            await call(index)
    await asyncio.gather(*(one(i) for i in range(count)))


async def stale_feeds(sidecar: SidecarProcess, scopes: int, _: float) -> str:
    """Tick `scopes` feeds once, then wait until every one is latched."""
    async with grpc.aio.insecure_channel(sidecar.uds_target) as channel:
        stub = pbg.GuardServiceStub(channel)
        await each(scopes, lambda index: stub.ReportMetric(pb.ReportMetricRequest(
            scope=pb.Scope(kind=pb.SCOPE_KIND_SYMBOL, id=f"FEED{index}"),
            metric=pb.METRIC_DATA_FEED_TICK, value=1), timeout=120))
        while True:
            state = await stub.GetState(pb.GetStateRequest(), timeout=120)
            if sum(s.state != pb.STATE_ARMED for s in state.scopes) >= scopes:
                return f"{scopes} feeds ticked once and latched stale"
            await asyncio.sleep(0.5)


async def tripped(sidecar: SidecarProcess, scopes: int) -> None:
    """Trip `scopes` strategies, each with a REASON."""
    async with grpc.aio.insecure_channel(sidecar.uds_target) as channel:
        stub = pbg.GuardServiceStub(channel)
        await each(scopes, lambda index: stub.Trigger(pb.TriggerRequest(
            scope=pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id=f"tripped-{index}"),
            reason=REASON), timeout=120))


async def registered(sidecar: SidecarProcess, executors: int) -> None:
    """Register `executors` heartbeats of one strategy, each with an hour's TTL."""
    async with grpc.aio.insecure_channel(sidecar.uds_target) as channel:
        stub = pbg.GuardServiceStub(channel)
        await each(executors, lambda index: stub.Heartbeat(pb.HeartbeatRequest(
            executor_id=f"executor-{index}", ttl_ms=3_600_000,
            scope=pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id="momo")), timeout=120))


class StateReads:
    """GetState, its answer taken as bytes: parsing 22 MB answers would busy this process,
    whose loop also times the stops."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.GetState = channel.unary_unary(  # noqa: N815 (the stub's name)
            "/ess.v1.GuardService/GetState", request_serializer=pb.GetStateRequest.
            SerializeToString, response_deserializer=len)


async def flood(sidecar: SidecarProcess, in_flight: int,
                call: Callable[[Any, int, int], Awaitable[None]],
                stop: asyncio.Event, stub_of: Callable[[grpc.aio.Channel], Any]
                = pbg.GuardServiceStub) -> int:
    """`in_flight` loops over one TCP connection, each making `call` until `stop`."""
    made = 0
    options = [("grpc.max_send_message_length", 8 << 20),
               ("grpc.max_receive_message_length", 1 << 30)]  # state-reads' answers
    async with grpc.aio.insecure_channel(sidecar.tcp_target, options=options) as channel:
        stub = stub_of(channel)

        async def loop(worker: int) -> None:
            nonlocal made
            while not stop.is_set():
                try:
                    await call(stub, worker, made)
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.01)
                made += 1
        await asyncio.gather(*(loop(w) for w in range(in_flight)))
    return made


async def unchecked_fill(stub: pbg.GuardServiceStub, worker: int, made: int) -> None:
    account = f"never-allowed-{worker}-{made}"
    await stub.ReportFill(pb.ReportFillRequest(
        account=account, strategy="s", symbol="X", side=pb.SIDE_BUY, quantity=1, price=1,
        client_order_id="never-checked", fill_id=f"fill-{made}"), timeout=30)


def watch_call(scopes: int) -> Callable[[pbg.GuardServiceStub, int, int], Awaitable[None]]:
    request = pb.WatchStateRequest(scopes=[pb.Scope(kind=pb.SCOPE_KIND_SYMBOL, id=f"W{i}")
                                           for i in range(scopes)])

    async def watch(stub: pbg.GuardServiceStub, worker: int, made: int) -> None:
        call = stub.WatchState(request)
        try:
            await asyncio.wait_for(call.read(), 2)
        except asyncio.TimeoutError:
            pass
        finally:
            call.cancel()
    return watch


async def new_feed(stub: pbg.GuardServiceStub, worker: int, made: int) -> None:
    await stub.ReportMetric(pb.ReportMetricRequest(
        scope=pb.Scope(kind=pb.SCOPE_KIND_SYMBOL, id=f"F{worker}-{made}"),
        metric=pb.METRIC_DATA_FEED_TICK, value=1), timeout=30)


async def state_read(stub: StateReads, worker: int, made: int) -> None:
    await stub.GetState(pb.GetStateRequest(), timeout=60)


async def heartbeat_list(stub: StateReads, worker: int, made: int) -> None:
    await stub.GetState(pb.GetStateRequest(include_heartbeats=True), timeout=60)


async def scenario(name: str, seconds: float, scopes: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        window = 3600.0 if name == "new-feeds" else STALE_WINDOW_S  # none goes stale
        config = f"[breakers.data_feed_stale]\nthreshold = 1\nwindow_s = {window}\n"
        sidecar = SidecarProcess(Path(folder), config).start()
        try:
            async with grpc.aio.insecure_channel(sidecar.uds_target) as channel:
                stops = Stops(pbg.GuardServiceStub(channel))
                if name == "state-reads":  # quiet with them tripped too
                    await tripped(sidecar, scopes)
                if name == "heartbeat-lists":  # and with them registered
                    await registered(sidecar, scopes)
                quiet = await stops.during(None, QUIET_TRIGGERS)
                pid = sidecar.process.pid if sidecar.process else 0
                cpu, started = cpu_seconds(pid), time.monotonic()
                if name == "stale-feeds":
                    load = await stale_feeds(sidecar, scopes, seconds)
                    cpu, started = cpu_seconds(pid), time.monotonic()
                    loaded = await stops.during(seconds)
                else:
                    stop = asyncio.Event()
                    call = {"unchecked-fills": unchecked_fill, "state-reads": state_read,
                            "heartbeat-lists": heartbeat_list, "new-feeds": new_feed,
                            }.get(name) or watch_call(scopes)
                    flooding = asyncio.ensure_future(flood(
                        sidecar, IN_FLIGHT[name], call, stop,
                        StateReads if name in ("state-reads", "heartbeat-lists")
                        else pbg.GuardServiceStub))
                    loaded = await stops.during(seconds)
                    stop.set()
                    made = await flooding
                    load = f"{made} calls made by {IN_FLIGHT[name]} in flight in {seconds:g} s"
                busy = (cpu_seconds(pid) - cpu) / (time.monotonic() - started)
                after = await stops.during(None, QUIET_TRIGGERS)
            print(f"{name}: {load}; the sidecar's CPU meanwhile {busy:.0%} of a core")
            for phase, taken in (("quiet", quiet), ("under load", loaded), ("after", after)):
                print(summary(phase, taken))
            ratio = statistics.median(loaded) / statistics.median(quiet)
            print(f"  under load / quiet, p50: {ratio:.1f}x")
        finally:
            sidecar.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append",
                        choices=["stale-feeds", "unchecked-fills", "watch-flood",
                                 "state-reads", "heartbeat-lists", "new-feeds"])
    parser.add_argument("--seconds", type=float, default=30.0, help="load and measure (s)")
    parser.add_argument("--scopes", type=int, default=20_000,
                        help="feeds made stale; scopes each WatchState names;"
                        " scopes tripped for state-reads; executors registered for"
                        " heartbeat-lists")
    args = parser.parse_args()
    for name in args.scenario or ["stale-feeds", "unchecked-fills", "watch-flood",
                                  "state-reads", "heartbeat-lists", "new-feeds"]:
        asyncio.run(scenario(name, args.seconds, args.scopes))


if __name__ == "__main__":
    main()
