"""`ess-sidecar serve` as a real subprocess on TCP and a Unix socket."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ess.v1 import guard_pb2_grpc as pb_grpc
from ess_sidecar.testing import SidecarProcess

CONFIG = """
[policy]
reset_cooldown_s = 1.0
[limits]
exposure_enabled = false
"""


def open_channel(sidecar: SidecarProcess, uds: bool = False) -> grpc.Channel:
    return grpc.insecure_channel(sidecar.uds_target if uds else sidecar.tcp_target)


def guard_stub(channel: grpc.Channel) -> pb_grpc.GuardServiceStub:
    return pb_grpc.GuardServiceStub(channel)


@pytest.fixture
def sidecar_process() -> Iterator[SidecarProcess]:
    workdir = Path(tempfile.mkdtemp(prefix="ess-e2e-"))
    process = SidecarProcess(workdir, CONFIG)
    yield process
    process.stop()
    shutil.rmtree(workdir, ignore_errors=True)
