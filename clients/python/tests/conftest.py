"""A real `ess-sidecar serve` subprocess, and scripted GuardService fakes, for client tests."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import pytest

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc
from ess_client import GuardClient
from ess_sidecar import testing

CONFIG = "[limits]\nexposure_enabled = false\n"
# The exposure limits as shipped (symbol 30 % of equity): orders reserve toward them.
EXPOSURE_CONFIG = "[limits]\nexposure_enabled = true\nmax_orders_per_second = 0\n"
# Generous, so that semantic tests do not depend on the machine's load; the deadline
# tests set their own.
RELAXED_TIMEOUT_S = 2.0
# "Within the deadline" allows this much event-loop slack on a loaded machine; it is far
# below anything else that could answer a check (gRPC's connect timeout is 20 s).
SLACK_S = 0.3


class SidecarProcess(testing.SidecarProcess):
    """The shared sidecar subprocess, plus the sidecar's own decision for comparison."""

    def unary_check(self, order: pb.CheckOrderRequest) -> pb.CheckOrderResponse:
        """The sidecar's own decision, through the plain generated stub."""
        with grpc.insecure_channel(self.uds_target) as channel:
            return pb_grpc.GuardServiceStub(channel).CheckOrder(order, timeout=10)

    def working_orders(self, account: str) -> list[pb.WorkingOrder]:
        """The account's working orders as the sidecar lists them (GetState)."""
        with grpc.insecure_channel(self.uds_target) as channel:
            return list(pb_grpc.GuardServiceStub(channel).GetState(pb.GetStateRequest(
                include_working_orders=True, working_orders_account=account),
                timeout=10).working_orders)


def _sidecar(config: str) -> Iterator[SidecarProcess]:
    workdir = Path(tempfile.mkdtemp(prefix="ess-client-"))
    process = SidecarProcess(workdir, config).start()
    yield process
    process.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def sidecar() -> Iterator[SidecarProcess]:
    yield from _sidecar(CONFIG)


@pytest.fixture
def exposure_sidecar() -> Iterator[SidecarProcess]:
    """A sidecar with the exposure limits on (nothing synced yet)."""
    yield from _sidecar(EXPOSURE_CONFIG)


@pytest.fixture
async def client(sidecar: SidecarProcess) -> AsyncIterator[GuardClient]:
    async with GuardClient(sidecar.uds_target, check_timeout_s=RELAXED_TIMEOUT_S) as guard:
        assert await guard.connect(timeout_s=10)
        yield guard


@pytest.fixture
async def exposure_client(exposure_sidecar: SidecarProcess) -> AsyncIterator[GuardClient]:
    async with GuardClient(exposure_sidecar.uds_target,
                           check_timeout_s=RELAXED_TIMEOUT_S) as guard:
        assert await guard.connect(timeout_s=10)
        yield guard


Answer = Callable[[pb.CheckOrderStreamRequest], pb.CheckOrderStreamResponse | None]


class ScriptedGuard(pb_grpc.GuardServiceServicer):
    """A GuardService whose stream (and unary CheckOrder) answers each request with
    `answer(request)`, or never when that is None. `received` counts requests (`orders`
    keeps them); `arrived` fires at `expect` of them."""

    def __init__(self, answer: Answer, expect: int = 1) -> None:
        self.answer = answer
        self.streams = 0
        self.received = 0
        self.orders: list[pb.CheckOrderRequest] = []
        self.expect = expect
        self.arrived = asyncio.Event()

    async def CheckOrderStream(self, request_iterator, context):  # noqa: ANN001, N802
        self.streams += 1
        async for request in request_iterator:
            self.received += 1
            self.orders.append(request.order)
            if self.received >= self.expect:
                self.arrived.set()
            response = self.answer(request)
            if response is not None:
                yield response

    async def CheckOrder(self, request, context):  # noqa: ANN001, N802
        """The unary call, answered as the stream answers: the response's decision."""
        self.received += 1
        self.orders.append(request)
        response = self.answer(pb.CheckOrderStreamRequest(order=request))
        if response is None:
            await asyncio.Event().wait()  # never: the caller's deadline ends it
        return response.decision


class ScriptedServer:
    """A grpc.aio server on a free TCP port running one ScriptedGuard."""

    def __init__(self, guard: ScriptedGuard) -> None:
        self.guard = guard
        self.server = grpc.aio.server()
        pb_grpc.add_GuardServiceServicer_to_server(guard, self.server)
        self.target = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"


StartScripted = Callable[..., Awaitable[ScriptedServer]]


@pytest.fixture
async def scripted() -> AsyncIterator[StartScripted]:
    """Factory: scripted(answer, expect=1) starts a ScriptedServer; all stop at teardown."""
    servers: list[ScriptedServer] = []

    async def start(answer: Answer, expect: int = 1) -> ScriptedServer:
        server = ScriptedServer(ScriptedGuard(answer, expect))
        await server.server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.server.stop(None)
