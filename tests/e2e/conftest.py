"""`ess-sidecar serve` as a real subprocess on TCP and a Unix socket."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ess.v1 import guard_pb2_grpc as pb_grpc

CONFIG = """
[policy]
reset_cooldown_s = 1.0
[limits]
exposure_enabled = false
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SidecarProcess:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.config = workdir / "ess.toml"
        self.config.write_text(CONFIG)
        self.state = workdir / "ess.db"
        self.uds = workdir / "ess.sock"
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> SidecarProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ess_sidecar", "serve", "--config", str(self.config),
             "--listen", self.target, "--uds", str(self.uds), "--state", str(self.state)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.wait_serving()
        return self

    def wait_serving(self, timeout: float = 20.0) -> None:
        """Block until health says SERVING (wait_for_ready waits for the port, no sleeps)."""
        with grpc.insecure_channel(self.target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="ess.v1.GuardService"),
                timeout=timeout, wait_for_ready=True)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    def channel(self, uds: bool = False) -> grpc.Channel:
        return grpc.insecure_channel(f"unix:{self.uds}" if uds else self.target)

    def stub(self, channel: grpc.Channel) -> pb_grpc.GuardServiceStub:
        return pb_grpc.GuardServiceStub(channel)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> tuple[int, str]:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=20)
        return self.process.returncode, output

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


@pytest.fixture
def sidecar_process() -> Iterator[SidecarProcess]:
    workdir = Path(tempfile.mkdtemp(prefix="ess-e2e-"))
    process = SidecarProcess(workdir)
    yield process
    process.stop()
    shutil.rmtree(workdir, ignore_errors=True)
