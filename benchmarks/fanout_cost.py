"""What one WatchState message costs the server: the sidecar against a bare grpc.aio server.

Both serve N watchers (clients/go/cmd/esswatchers, Go, over the Unix socket) while
transitions are published at --rate a second: the sidecar's come from a storm of Trigger and
forced Reset (benchmarks/storm.py's), the bare server's from a timer that hands the same
prebuilt, serialized transition to every watcher's queue, which its stream writes (no logic,
no storm to serve). Over --seconds, per server: the messages the watchers received and the
server's CPU per message. The bare figure is the floor for any fan-out served by grpc.aio in
one Python process, wherever that process runs.

    python benchmarks/fanout_cost.py [--watchers 200] [--rate 100] [--seconds 10]

    python benchmarks/fanout_cost.py --serve-bare --listen HOST:PORT --uds PATH  # the server
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

import grpc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.check_latency import Server, start_server, stop_server, \
    wait_serving  # noqa: E402
from benchmarks.goclient import SegmentProcess, build  # noqa: E402
from benchmarks.storm import Storm  # noqa: E402
from ess.v1 import guard_pb2 as pb  # noqa: E402
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: E402

TRANSITION = pb.WatchStateResponse(
    kind=pb.WATCH_EVENT_KIND_TRANSITION, scope=pb.Scope(kind=pb.SCOPE_KIND_STRATEGY,
                                                        id="storm-1"),
    state=pb.STATE_TRIPPED, previous_state=pb.STATE_ARMED, reason="storm", actor="bench",
    cause=pb.CAUSE_TRIGGER)


async def serve_bare(listen: str, uds: str, rate: float) -> None:
    """WatchState only: SNAPSHOT_END, then every published transition, as bytes."""
    queues: set[asyncio.Queue[bytes]] = set()

    async def watch(raw: bytes, context: grpc.aio.ServicerContext) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        queues.add(queue)
        try:
            await context.write(pb.WatchStateResponse(
                kind=pb.WATCH_EVENT_KIND_SNAPSHOT_END).SerializeToString())
            while True:
                await context.write(await queue.get())
        finally:
            queues.discard(queue)

    async def publish() -> None:
        version, start = 0, time.monotonic()
        while True:
            version += 1
            message = TRANSITION
            message.version = version
            data = message.SerializeToString()
            for queue in queues:
                queue.put_nowait(data)
            await asyncio.sleep(max(0.0, start + version / rate - time.monotonic()))

    server = grpc.aio.server()
    handler = grpc.unary_stream_rpc_method_handler(watch, response_serializer=lambda b: b)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "ess.v1.GuardService", {"WatchState": handler}),))
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("ess.v1.GuardService", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(listen)
    server.add_insecure_port(f"unix:{uds}")
    await server.start()
    publisher = asyncio.create_task(publish())
    try:
        await server.wait_for_termination()
    finally:
        publisher.cancel()


def watch_config(tmp: str, watchers: int) -> str:
    """A config file serving `watchers` watchers (watch.max_watchers is 100 by default)."""
    path = f"{tmp}/ess.toml"
    with open(path, "w") as f:
        f.write(f"[watch]\nmax_watchers = {watchers + 1}\n")
    return path


def measure(server: Server, watchers_binary: str, watchers: int, seconds: float,
            rate: float) -> dict:
    target = server.target("uds")
    readers = SegmentProcess([watchers_binary, "--target", target, "--watchers",
                              str(watchers), "--stalled", "0"])
    try:
        readers.answer()  # every watcher has its snapshot
        storm = Storm(target, rate) if server.sidecar else None
        if storm is not None:
            storm.start()
        before, cpu, start = readers.segment("")["transitions"], server.cpu_seconds(), \
            time.monotonic()
        time.sleep(seconds)  # the measured window: the servers work meanwhile
        after, cpu = readers.segment("")["transitions"], server.cpu_seconds() - cpu
        wall = time.monotonic() - start
        if storm is not None:
            storm.stop()
    finally:
        readers.close()
    messages = after - before
    return {"server": server.name, "messages_per_s": messages / wall,
            "cpu_us_per_message": cpu * 1e6 / max(messages, 1), "cpu_share": cpu / wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--listen", help=argparse.SUPPRESS)
    parser.add_argument("--uds", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        asyncio.run(serve_bare(args.listen, args.uds, args.rate))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="ess-fanout-") as tmp:
        watchers_binary, go_version = build(tmp, "esswatchers")
        print(f"watchers: {args.watchers}, Go ({go_version}), over the Unix socket;"
              f" {args.rate:g} transitions/s; {args.seconds:g} s measured per server")
        for name, argv_, sidecar in (
                ("bare aio", [os.path.abspath(__file__), "--serve-bare", "--rate",
                              str(args.rate)], False),
                ("sidecar", ["-m", "ess_sidecar", "serve", "--state", f"{tmp}/ess.db",
                             "--config", watch_config(tmp, args.watchers)], True)):
            server = start_server(name, argv_, tmp, sidecar)
            try:
                wait_serving(server, 30)
                rows.append(measure(server, watchers_binary, args.watchers, args.seconds,
                                    args.rate))
            finally:
                stop_server(server)
    print(f"{'server':<10} {'messages/s':>11} {'CPU µs/message':>15} {'CPU share':>10}")
    for r in rows:
        print(f"{r['server']:<10} {r['messages_per_s']:>11.0f} {r['cpu_us_per_message']:>15.0f}"
              f" {r['cpu_share']:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
