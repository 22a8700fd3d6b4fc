"""A grpc.aio GuardService with no logic at all: the baseline the sidecar is measured against.

It answers every CheckOrder with one prebuilt ALLOWED decision, and every CheckOrderStream
request with that decision under the request's id. Trigger and Reset change nothing but a
version counter, which GetState reports: storm.py's floor, commands that cost only their
transport. The messages are the sidecar's messages,
filled to about the sidecar's sizes, so transport and (de)serialisation cost the same on both
sides of the comparison and the difference is the sidecar's own work. grpc.health.v1 is
registered and SERVING, so the benchmark waits for readiness the same way for both servers.

    python benchmarks/bare_server.py --listen 127.0.0.1:50061 --uds /tmp/bare.sock \
        [--event-loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ess.v1 import guard_pb2, guard_pb2_grpc

SERVICE = "ess.v1.GuardService"

# Shaped like the sidecar's ALLOWED answer: no message, decision id "<8 hex>-<counter>".
DECISION = guard_pb2.CheckOrderResponse(
    allowed=True,
    reason=guard_pb2.DECISION_REASON_ALLOWED,
    state_version=1,
    decision_id="5f3a9c1e-10000",
)


def stream_answer(
        request: guard_pb2.CheckOrderStreamRequest) -> guard_pb2.CheckOrderStreamResponse:
    """DECISION under the stream request's id."""
    return guard_pb2.CheckOrderStreamResponse(request_id=request.request_id, decision=DECISION)


class BareGuardService(guard_pb2_grpc.GuardServiceServicer):
    """CheckOrder and CheckOrderStream without a decision, Trigger and Reset without a
    state (a version counter only, for GetState); every other RPC is UNIMPLEMENTED."""

    version = 0

    async def Trigger(self, request, context):
        self.version += 1
        return guard_pb2.TriggerResponse(state=guard_pb2.STATE_TRIPPED,
                                         state_version=self.version)

    async def Reset(self, request, context):
        self.version += 1
        return guard_pb2.ResetResponse(state=guard_pb2.STATE_ARMED, state_version=self.version)

    async def GetState(self, request, context):
        return guard_pb2.GetStateResponse(state_version=self.version)

    async def CheckOrder(self, request, context):
        return DECISION

    async def CheckOrderStream(self, request_iterator, context):
        async for request in request_iterator:
            yield stream_answer(request)


def add_services(server, servicer, health_servicer, listen: str | None,
                 uds: str | None) -> None:
    """Registers the GuardService servicer and the health servicer (grpc.aio or sync grpcio
    alike) on server and binds it to listen (TCP) and/or uds (a Unix socket path)."""
    guard_pb2_grpc.add_GuardServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if listen:
        server.add_insecure_port(listen)
    if uds:
        if os.path.exists(uds):
            os.unlink(uds)  # a stale socket from a killed run would make the bind fail
        server.add_insecure_port(f"unix:{uds}")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None,
               example: str) -> argparse.Namespace:
    """parser's arguments plus --listen (e.g. example) and --uds; one of them is required."""
    parser.add_argument("--listen", help=f"TCP host:port, e.g. {example}")
    parser.add_argument("--uds", help="Unix domain socket path")
    args = parser.parse_args(argv)
    if not (args.listen or args.uds):
        parser.error("give --listen and/or --uds")
    return args


async def serve(listen: str | None, uds: str | None) -> None:
    server = grpc.aio.server()
    health_servicer = health.aio.HealthServicer()
    add_services(server, BareGuardService(), health_servicer, listen, uds)
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace=1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--event-loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="the sidecar's default is uvloop (server.event_loop)")
    args = parse_args(parser, argv, "127.0.0.1:50061")
    if args.event_loop == "uvloop":
        import uvloop  # noqa: PLC0415
        uvloop.run(serve(args.listen, args.uds))
    else:
        asyncio.run(serve(args.listen, args.uds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
