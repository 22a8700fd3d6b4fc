"""The two clients of benchmarks/peers: N calls in flight for a segment of fixed duration.

Both have the same interface: `run(seconds)` keeps `concurrency` calls in flight for that
long (a worker starts no call after the deadline) and returns (latencies in ns, wall ns,
client CPU ns); `close()`. Orders are benchmarks/workload.py's, shared by the workers of one
client (unique client_order_id, prices cycling, so N workers never send identical orders at
once); each is made before its call is timed, and every answer is checked ALLOWED (on the
stream: the request's id echoed), so a denial or an error fails the run.

- GoClient: clients/go/cmd/peersbench, one process per (subject, concurrency), its
  connections kept across segments (that file says how it keeps N calls in flight).
- PyClient: this process, one asyncio event loop, N coroutines. gRPC through grpc.aio: one
  channel with a connection of its own (not gRPC's process-wide one, which every client
  of a cell would share: at N = 128, past the sidecar's server.max_calls_per_connection)
  shared by the N coroutines, each awaiting a unary
  CheckOrder, or each with its own CheckOrderStream (write, then read). HTTP (OPA) through
  asyncio streams on N Unix-socket connections, one per coroutine, keep-alive, a minimal
  HTTP/1.1 exchange written here (request line, Host, Content-Type, Content-Length; the
  answer's Content-Length body, decoded with json), so no new dependency and no thread.

Python's limits, honestly: one thread runs every coroutine, so N in flight means N calls
queued on the sockets and the server, not N calls being prepared at once; the client's
own CPU per call (110-450 us in the committed run, printed per row) competes with the server for
the 2 cores and caps calls/s whatever the server does. Its figures are what a Python
executor sees, not what the server can do: read the Go client's for that. The harness
pauses Python's garbage collector during a segment (as check_latency.py does).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time

import grpc

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import workload  # noqa: E402 (benchmarks/)
import goclient  # noqa: E402 (benchmarks/)

from probes import OPA_DECISION  # noqa: E402 (benchmarks/peers/)

BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin")


class ClientError(Exception):
    """A call failed or an answer was not the expected ALLOWED decision."""


def build_go() -> tuple[str, str]:
    """go build peersbench into benchmarks/peers/bin; returns (binary, versions)."""
    return goclient.build(BIN, "peersbench")


class GoClient(goclient.SegmentProcess):
    """peersbench --api API --target T --concurrency N, driven by durations on its stdin."""

    def __init__(self, binary: str, api: str, target: str, concurrency: int) -> None:
        super().__init__(
            [binary, "--api", api, "--target", target, "--concurrency", str(concurrency)])

    def run(self, seconds: float) -> tuple[list[int], int, int]:
        reply = self.segment(str(max(1, round(seconds * 1000))))
        return reply["latencies_ns"], reply["wall_ns"], reply["cpu_ns"]


class _Unary:
    def __init__(self, stub: pb_grpc.GuardServiceStub, orders: workload.Orders) -> None:
        self._call, self._next = stub.CheckOrder, orders.next

    def prepare(self) -> pb.CheckOrderRequest:
        return self._next()

    async def call(self, request: pb.CheckOrderRequest) -> None:
        reply = await self._call(request)
        if not reply.allowed:
            raise ClientError(f"CheckOrder denied: {reply}")

    async def close(self) -> None:
        pass


class _Stream:
    def __init__(self, stub: pb_grpc.GuardServiceStub, orders: workload.Orders) -> None:
        self._stream, self._next, self._id = stub.CheckOrderStream(), orders.next, 0

    def prepare(self) -> pb.CheckOrderStreamRequest:
        self._id += 1
        return pb.CheckOrderStreamRequest(request_id=self._id, order=self._next())

    async def call(self, request: pb.CheckOrderStreamRequest) -> None:
        await self._stream.write(request)
        reply = await self._stream.read()
        if reply is grpc.aio.EOF or reply.request_id != request.request_id \
                or not reply.decision.allowed:
            raise ClientError(f"stream answer for {request.request_id} was {reply}")

    async def close(self) -> None:
        await self._stream.done_writing()
        await self._stream.code()  # let the call finish, so no task outlives the loop


class _Http:
    """One keep-alive HTTP/1.1 connection to OPA over its Unix socket."""

    HEAD = (f"POST {OPA_DECISION} HTTP/1.1\r\nHost: opa\r\n"
            "Content-Type: application/json\r\nContent-Length: ").encode()

    def __init__(self, orders: workload.Orders) -> None:
        self._next = orders.next
        self._reader = self._writer = None

    async def open(self, path: str) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(path)

    def prepare(self) -> bytes:
        o = self._next()
        body = json.dumps({"input": {
            "account": o.account, "strategy": o.strategy, "symbol": o.symbol, "side": "BUY",
            "quantity": o.quantity, "price": o.price, "client_order_id": o.client_order_id,
        }}, separators=(",", ":")).encode()
        return self.HEAD + str(len(body)).encode() + b"\r\n\r\n" + body

    async def call(self, request: bytes) -> None:
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status, *headers = head.decode("latin-1").split("\r\n")
        length = next((int(h.split(":", 1)[1]) for h in headers
                       if h.lower().startswith("content-length:")), None)
        if length is None:
            raise ClientError(f"OPA's answer has no Content-Length: {head!r}")
        payload = await self._reader.readexactly(length)
        result = json.loads(payload).get("result") if " 200 " in status else None
        if not result or result.get("allowed") is not True:
            raise ClientError(f"OPA: {status}: {payload!r}")

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


class PyClient:
    """N coroutines on this process's event loop (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, api: str, target: str,
                 concurrency: int) -> None:
        self._loop, self._channel = loop, None
        self._workers = loop.run_until_complete(self._open(api, target, concurrency))

    async def _open(self, api: str, target: str, n: int) -> list:
        orders = workload.Orders()
        if api == "http":
            workers = [_Http(orders) for _ in range(n)]
            for worker in workers:
                await worker.open(target.removeprefix("unix:"))
            return workers
        self._channel = grpc.aio.insecure_channel(
            target, options=[("grpc.use_local_subchannel_pool", 1)])
        stub = pb_grpc.GuardServiceStub(self._channel)
        return [(_Unary if api == "unary" else _Stream)(stub, orders) for _ in range(n)]

    def run(self, seconds: float) -> tuple[list[int], int, int]:
        gc.collect()
        gc.disable()
        try:
            cpu = time.process_time_ns()
            latencies, wall = self._loop.run_until_complete(self._segment(seconds))
            return latencies, wall, time.process_time_ns() - cpu
        finally:
            gc.enable()

    async def _segment(self, seconds: float) -> tuple[list[int], int]:
        clock, latencies = time.perf_counter_ns, []
        start = clock()
        deadline = start + int(seconds * 1e9)

        async def work(worker) -> None:
            record = latencies.append
            while True:
                request = worker.prepare()
                begin = clock()
                if begin >= deadline:
                    return
                await worker.call(request)
                record(clock() - begin)

        await asyncio.gather(*(work(w) for w in self._workers))
        return latencies, clock() - start

    def close(self) -> None:
        self._loop.run_until_complete(self._close())

    async def _close(self) -> None:
        for worker in self._workers:
            await worker.close()
        if self._channel is not None:
            await self._channel.close()
