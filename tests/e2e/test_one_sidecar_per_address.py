"""Two real sidecars on one address: the second refuses to start, naming the key."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ess.v1 import guard_pb2 as pb
from ess_sidecar.testing import SidecarProcess
from tests.e2e.conftest import CONFIG, guard_stub

pytestmark = pytest.mark.e2e

GLOBAL = pb.Scope(kind=pb.SCOPE_KIND_GLOBAL)


@pytest.fixture
def workdirs() -> Iterator[tuple[Path, Path]]:
    first, second = (Path(tempfile.mkdtemp(prefix="ess-e2e-")) for _ in range(2))
    yield first, second
    shutil.rmtree(first, ignore_errors=True)
    shutil.rmtree(second, ignore_errors=True)


def serve(workdir: Path, listen: str, uds: Path) -> subprocess.CompletedProcess[str]:
    """A second `ess-sidecar serve`, with its own state file, run to its exit."""
    return subprocess.run(
        [sys.executable, "-m", "ess_sidecar", "serve", "--listen", listen, "--uds", str(uds),
         "--state", str(workdir / "ess.db")], capture_output=True, text=True, timeout=60)


def test_a_second_sidecar_on_a_taken_tcp_port_refuses_to_start(workdirs) -> None:
    first_dir, second_dir = workdirs
    first = SidecarProcess(first_dir, CONFIG).start()
    try:
        second = serve(second_dir, first.tcp_target, second_dir / "ess.sock")
        assert second.returncode == 2, second.stderr
        assert "server.listen" in second.stderr and first.tcp_target in second.stderr
        assert not (second_dir / "ess.sock").exists()  # it served on nothing
        # Every connection reaches the first: a halt sent on fresh connections stops it.
        for _ in range(6):
            with grpc.insecure_channel(first.tcp_target) as channel:
                guard_stub(channel).Trigger(pb.TriggerRequest(scope=GLOBAL, reason="halt"))
        with grpc.insecure_channel(first.uds_target) as channel:
            events = guard_stub(channel).ListEvents(pb.ListEventsRequest(page_size=100))
        assert len(events.events) == 6  # each halt reached the first, and each is recorded
        assert first.process is not None and first.process.poll() is None
    finally:
        first.stop()


def test_a_second_sidecar_on_a_host_name_whose_address_is_taken_refuses_to_start(
        workdirs) -> None:
    """gRPC, given a name, binds what it can: "localhost" with 127.0.0.1's port taken would
    have served on ::1 alone, and clients of "localhost" reached one sidecar or the other."""
    first_dir, second_dir = workdirs
    first = SidecarProcess(first_dir, CONFIG).start()
    try:
        host, port = first.tcp_target.rsplit(":", 1)
        assert host == "127.0.0.1", first.tcp_target
        second = serve(second_dir, f"localhost:{port}", second_dir / "ess.sock")
        assert second.returncode == 2, second.stderr
        assert "server.listen" in second.stderr and f"127.0.0.1:{port}" in second.stderr
        assert not (second_dir / "ess.sock").exists()
    finally:
        first.stop()


def test_a_second_sidecar_on_a_live_unix_socket_refuses_to_start(workdirs) -> None:
    first_dir, second_dir = workdirs
    first = SidecarProcess(first_dir, CONFIG).start()
    try:
        second = serve(second_dir, "", first.uds)
        assert second.returncode == 2, second.stderr
        assert "server.uds" in second.stderr and str(first.uds) in second.stderr
        first.wait_serving(5.0)  # its socket was left alone
    finally:
        first.stop()
