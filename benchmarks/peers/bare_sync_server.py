"""A synchronous grpcio GuardService with no logic: benchmarks/bare_server.py, on threads.

The bare baseline of benchmarks/peers with the other server model grpcio offers: a
`grpc.server` whose handlers run on a `ThreadPoolExecutor`. It answers exactly as
benchmarks/bare_server.py does (its prebuilt ALLOWED decision, imported, so the messages
are the same bytes): every CheckOrder with DECISION, every CheckOrderStream request with
DECISION under the request's id. grpc.health.v1 is registered and SERVING.

Caveat, inherent to the model: a stream holds one pool thread for its whole life, so the
pool needs a thread per concurrent stream (the harness opens up to 128) or later streams
wait for a free thread. --workers defaults to 160 for that; unary calls then run on up to
160 threads that take turns holding the GIL, which is what a synchronous grpcio server
sized for streams does.

    python benchmarks/peers/bare_sync_server.py --uds /tmp/bare-sync.sock [--listen HOST:PORT]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bare_server  # noqa: E402 (benchmarks/)
from bare_server import DECISION, SERVICE  # noqa: E402 (benchmarks/)

from ess.v1 import guard_pb2_grpc  # noqa: E402


class BareSyncGuardService(guard_pb2_grpc.GuardServiceServicer):
    """CheckOrder and CheckOrderStream without a decision; every other RPC is UNIMPLEMENTED."""

    def CheckOrder(self, request, context):
        return DECISION

    def CheckOrderStream(self, request_iterator, context):
        for request in request_iterator:
            yield bare_server.stream_answer(request)


def serve(listen: str | None, uds: str | None, workers: int) -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=workers))
    health_servicer = health.HealthServicer()
    bare_server.add_services(server, BareSyncGuardService(), health_servicer, listen, uds)
    server.start()
    for name in ("", SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    health_servicer.enter_graceful_shutdown()
    server.stop(grace=1.0).wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=160,
                        help="handler threads: at least the concurrent streams")
    args = bare_server.parse_args(parser, argv, "127.0.0.1:50062")
    serve(args.listen, args.uds, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
