"""A real `ess-sidecar serve` subprocess, and scripted GuardService fakes, for client tests."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc
from ess_client import GuardClient

CONFIG = "[limits]\nexposure_enabled = false\n"
# The sidecar is run from the repository checkout this client lives in.
REPO_ROOT = Path(__file__).resolve().parents[3]
# Generous, so that semantic tests do not depend on the machine's load; the deadline
# tests set their own.
RELAXED_TIMEOUT_S = 2.0
# "Within the deadline" allows this much event-loop slack on a loaded machine; it is far
# below anything else that could answer a check (gRPC's connect timeout is 20 s).
SLACK_S = 0.3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SidecarProcess:
    """One sidecar subprocess on a temp Unix socket and a free TCP port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        (workdir / "ess.toml").write_text(CONFIG)
        self.uds = workdir / "ess.sock"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def tcp_target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def uds_target(self) -> str:
        return f"unix:{self.uds}"

    def start(self) -> SidecarProcess:
        with open(self.workdir / "sidecar.log", "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ess_sidecar", "serve", "--config",
                 str(self.workdir / "ess.toml"), "--listen", self.tcp_target, "--uds",
                 str(self.uds), "--state", str(self.workdir / "ess.db")],
                cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT)
        try:
            self.wait_serving()
        except grpc.RpcError as error:
            log = (self.workdir / "sidecar.log").read_text(errors="replace")
            raise AssertionError(f"sidecar did not become SERVING:\n{log}") from error
        return self

    def wait_serving(self, timeout_s: float = 20.0) -> None:
        """Block until health says SERVING: wait_for_ready waits for the port, no sleeps."""
        with grpc.insecure_channel(self.tcp_target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="ess.v1.GuardService"),
                timeout=timeout_s, wait_for_ready=True)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    def unary_check(self, order: pb.CheckOrderRequest) -> pb.CheckOrderResponse:
        """The sidecar's own decision, through the plain generated stub."""
        with grpc.insecure_channel(self.uds_target) as channel:
            return pb_grpc.GuardServiceStub(channel).CheckOrder(order, timeout=10)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


@pytest.fixture
def sidecar() -> Iterator[SidecarProcess]:
    workdir = Path(tempfile.mkdtemp(prefix="ess-client-"))
    process = SidecarProcess(workdir).start()
    yield process
    process.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def client(sidecar: SidecarProcess) -> AsyncIterator[GuardClient]:
    async with GuardClient(sidecar.uds_target, check_timeout_s=RELAXED_TIMEOUT_S) as guard:
        assert await guard.connect(timeout_s=10)
        yield guard


Answer = Callable[[pb.CheckOrderStreamRequest], pb.CheckOrderStreamResponse | None]


class ScriptedGuard(pb_grpc.GuardServiceServicer):
    """A GuardService whose stream answers each request with `answer(request)`, or never
    when that is None. `received` counts requests; `arrived` fires at `expect` of them."""

    def __init__(self, answer: Answer, expect: int = 1) -> None:
        self.answer = answer
        self.streams = 0
        self.received = 0
        self.expect = expect
        self.arrived = asyncio.Event()

    async def CheckOrderStream(self, request_iterator, context):  # noqa: ANN001, N802
        self.streams += 1
        async for request in request_iterator:
            self.received += 1
            if self.received >= self.expect:
                self.arrived.set()
            response = self.answer(request)
            if response is not None:
                yield response


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
