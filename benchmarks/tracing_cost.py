"""What tracing adds to a unary CheckOrder: the gated instrumentation, sampled or not.

Modes, each a server configuration:
  none          no interceptor
  ungated       the OpenTelemetry aio interceptor alone, span never sampled (ratio 0):
                what the gate in server_interceptors saves
  unsampled     server_interceptors (gate + instrumentation), check ratio 0
  default       server_interceptors at the default check ratio (0.01): the shipped cost
  sampled       server_interceptors, check ratio 1: every span recorded and exported (to a
                BatchSpanProcessor whose exporter drops)

Two measurements, same run:
1. In process, no transport: `intercept_service`, then the wrapped behaviour with a
   stand-in servicer context, against calling the handler directly; median of batches.
2. Over a Unix socket: one subprocess server per mode serving the real guard, one sync
   client, one call in flight, --rounds segments in the order A B C.., ..C B A so drift
   falls on all alike; latency p50 and the server's CPU per call (/proc/<pid>/stat). The
   orders and the servers' limits are benchmarks/workload.py's: each order has its own
   client_order_id, and a SyncPositions after every segment (untimed, outside the CPU
   window) ends the orders it left working.

    python benchmarks/tracing_cost.py [--calls N] [--rounds N] [--inproc N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import namedtuple

import grpc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import workload  # noqa: E402 (benchmarks/)
from check_latency import cpu_seconds  # noqa: E402 (benchmarks/)
from ess.v1 import guard_pb2 as pb  # noqa: E402
from ess.v1 import guard_pb2_grpc as pb_grpc  # noqa: E402
from opentelemetry.instrumentation.grpc import aio_server_interceptor  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, \
    SpanExportResult  # noqa: E402

from ess_sidecar.adapters.telemetry.tracing import server_interceptors, \
    tracer_provider  # noqa: E402
from ess_sidecar.settings import TelemetrySettings  # noqa: E402

RATIOS = {"ungated": 0.0, "unsampled": 0.0, "default": 0.01, "sampled": 1.0}
MODES = ("none", *RATIOS)
ORDER = pb.CheckOrderRequest(account="ACC-1", strategy="STRAT-1", symbol="BTC-USD",
                             side=pb.SIDE_BUY, quantity=1.0, price=100.0,
                             client_order_id="5f3a9c1e2b4d-1")  # in process: never decided
WARMUP = 500
Details = namedtuple("Details", "method invocation_metadata")
Metadatum = namedtuple("Metadatum", "key value")


class Dropping(SpanExporter):
    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def interceptors_for(mode: str) -> list | None:
    if mode == "none":
        return None
    settings = TelemetrySettings(check_order_sample_ratio=RATIOS[mode])
    provider = tracer_provider(settings, Resource.create({}))
    provider.add_span_processor(BatchSpanProcessor(Dropping()))
    if mode == "ungated":
        return [aio_server_interceptor(tracer_provider=provider)]
    return server_interceptors(provider)


class Context:
    """The little of a grpc.aio ServicerContext the instrumentation reads on a call."""

    def invocation_metadata(self) -> tuple:
        return (Metadatum("user-agent", "grpc-python/bench"),)

    def peer(self) -> str:
        return "unix:"


async def inproc_ns(mode: str, calls: int, batch: int = 1000) -> float:
    async def behavior(request: object, context: object) -> object:
        return request
    handler = grpc.unary_unary_rpc_method_handler(behavior)

    async def continuation(details: object) -> object:
        return handler
    interceptor = (interceptors_for(mode) or [None])[0]
    details = Details("/ess.v1.GuardService/CheckOrder", Context().invocation_metadata())
    context, per_call = Context(), []
    for _ in range(calls // batch):
        start = time.perf_counter_ns()
        for _ in range(batch):
            found = await (interceptor.intercept_service(continuation, details)
                           if interceptor else continuation(details))
            await found.unary_unary(ORDER, context)
        per_call.append((time.perf_counter_ns() - start) / batch)
    return statistics.median(per_call)


async def serve(mode: str, uds: str, state: str, longest_run: str) -> None:
    from ess_sidecar.adapters.grpc.handlers import add_guard_service  # noqa: PLC0415
    from ess_sidecar.adapters.grpc.servicer import GuardServicer  # noqa: PLC0415
    from ess_sidecar.bootstrap import build  # noqa: PLC0415
    from ess_sidecar.settings import load_settings  # noqa: PLC0415
    settings = load_settings(None, store={"path": state}, telemetry={"enabled": False},
                             limits=workload.limits(int(longest_run)))
    server = grpc.aio.server(interceptors=interceptors_for(mode))
    add_guard_service(GuardServicer(build(settings).guard, 5.0), server)
    server.add_insecure_port(f"unix:{uds}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def measure(stubs: dict[str, object], pids: dict[str, int], calls: int,
            rounds: int) -> tuple[dict[str, list[int]], dict[str, float]]:
    """Latency of every call, and server CPU seconds, per mode."""
    latencies: dict[str, list[int]] = {mode: [] for mode in stubs}
    cpu = dict.fromkeys(stubs, 0.0)
    orders = {mode: workload.Orders() for mode in stubs}
    for mode, stub in stubs.items():  # warm-up
        stub.SyncPositions(workload.SETTLE)  # equity and the mark
        for n in workload.chunks(WARMUP):
            for _ in range(n):
                stub.CheckOrder(orders[mode].next())
            stub.SyncPositions(workload.SETTLE)
    for round_ in range(rounds):
        for mode in list(stubs) if round_ % 2 == 0 else reversed(stubs):
            call, out, next_order = stubs[mode].CheckOrder, latencies[mode], orders[mode].next
            gc.disable()
            cpu[mode] -= cpu_seconds(pids[mode])
            for _ in range(calls // rounds):
                order = next_order()
                start = time.perf_counter_ns()
                answer = call(order)
                out.append(time.perf_counter_ns() - start)
                assert answer.allowed, answer
            cpu[mode] += cpu_seconds(pids[mode])
            gc.enable()
            stubs[mode].SyncPositions(workload.SETTLE)  # ends the segment's orders
    return latencies, cpu


def over_uds(calls: int, rounds: int) -> tuple[dict[str, list[int]], dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="ess-bench-") as tmp:
        servers, stubs, pids = [], {}, {}
        try:
            for mode in MODES:
                uds = os.path.join(tmp, f"{mode}.sock")
                servers.append(subprocess.Popen(
                    [sys.executable, __file__, "--serve", mode, uds,
                     os.path.join(tmp, f"{mode}.db"), str(calls // rounds)],
                    stdout=subprocess.PIPE, text=True))
                assert servers[-1].stdout.readline().strip() == "ready", f"{mode} did not start"
                pids[mode] = servers[-1].pid
                stubs[mode] = pb_grpc.GuardServiceStub(grpc.insecure_channel(f"unix:{uds}"))
            return measure(stubs, pids, calls, rounds)
        finally:
            for server in servers:
                server.terminate()
                server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="per server")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--inproc", type=int, default=200000, help="in-process calls per mode")
    parser.add_argument("--serve", nargs=4, metavar=("MODE", "UDS", "STATE", "LONGEST_RUN"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(*args.serve))
        return
    print("in process, interceptor path per call (median of 1000-call batches):")
    inproc = {mode: asyncio.run(inproc_ns(mode, args.inproc)) for mode in MODES}
    for mode in MODES:
        print(f"  {mode:9s} {inproc[mode] / 1000:7.2f} µs"
              f"  (+{(inproc[mode] - inproc['none']) / 1000:.2f} µs)")
    latencies, cpu = over_uds(args.calls, args.rounds)
    calls = args.calls // args.rounds * args.rounds
    p50 = {mode: statistics.median(values) / 1000 for mode, values in latencies.items()}
    print(f"over a Unix socket, unary CheckOrder, {calls} calls per server, "
          f"{args.rounds} ABBA rounds:")
    for mode in MODES:
        print(f"  {mode:9s} p50 {p50[mode]:6.1f} µs  ratio {p50[mode] / p50['none']:.3f}"
              f"   server CPU {cpu[mode] / calls * 1e6:6.1f} µs/call"
              f"  ratio {cpu[mode] / cpu['none']:.3f}")


if __name__ == "__main__":
    main()
