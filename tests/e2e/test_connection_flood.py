"""A flood of connections never takes the kill switch: each address holds at most
`server.max_connections` (lowered to fit the open-files limit), the soft limit is raised to
the hard one at start, and the metrics endpoint serves a bounded number of clients, so the
descriptors a stop needs to be stored are always there (before: 400 idle TCP connections at
a limit of 256 left nothing reachable, the Unix socket and a Trigger included)."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ess_sidecar.adapters.grpc.server import MIN_CONNECTIONS, RESERVED_DESCRIPTORS
from ess_sidecar.adapters.telemetry.prometheus_http import MAX_CLIENTS
from ess_sidecar.testing import SidecarProcess, free_port, full_pipe, python_under, until
from tests.e2e.conftest import CONFIG
from tests.e2e.essctl_helpers import essctl, restricted

FLOOD = 400  # idle connections, more than a limit of 256 has room for


@pytest.fixture(autouse=True)
def room_for_the_flood() -> Iterator[None]:
    """This process holds the flood's sockets: its own soft limit raised for them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = FLOOD + 200
    try:  # a hard limit below it is raised too: root may (CI runs as root)
        resource.setrlimit(resource.RLIMIT_NOFILE, (
            max(soft, needed), hard if hard == resource.RLIM_INFINITY else max(hard, needed)))
    except (ValueError, OSError) as error:
        pytest.fail(f"this test needs {needed} open files (ulimit -n {soft}, -Hn {hard}): {error}")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def workdir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="ess-flood-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def soft_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no open-files limit in /proc/{pid}/limits")


@contextlib.contextmanager
def flood(host: str, port: int, count: int = FLOOD) -> Iterator[list[socket.socket]]:
    """`count` idle TCP connections (no HTTP/2 preface: held until the server's handshake
    timeout, or closed at once past its cap)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection((host, port), timeout=10))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def closed_by_server(sockets: list[socket.socket]) -> int:
    """How many of `sockets` the server has closed (end of file, or reset)."""
    closed = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            closed += sock.recv(64) == b""
        except BlockingIOError:
            pass
        except ConnectionResetError:
            closed += 1
    return closed


def trip_and_check_it_is_stored(sidecar: SidecarProcess, target: str) -> None:
    """A stop over `target` is acknowledged, and survives SIGKILL: it was stored."""
    result = essctl(target, "trigger", "--scope", "account:ACC-1", "--reason", "flood")
    assert result.returncode == 0, result.stderr
    assert restricted(target)["ACCOUNT:ACC-1"]["state"] == "TRIPPED"
    sidecar.kill()
    sidecar.start()
    assert restricted(sidecar.uds_target)["ACCOUNT:ACC-1"]["state"] == "TRIPPED"


def test_a_flood_on_tcp_at_a_hard_limit_leaves_the_unix_socket_and_the_store(
        workdir: Path) -> None:
    sidecar = SidecarProcess(workdir, CONFIG, open_files=(256, 256))
    try:
        sidecar.start()
        pid = sidecar.process.pid  # type: ignore[union-attr]
        cap = (256 - RESERVED_DESCRIPTORS) // 2  # two addresses: TCP and the Unix socket
        with flood("127.0.0.1", sidecar.port) as sockets:
            until(lambda: closed_by_server(sockets) >= FLOOD - cap,
                  f"the sidecar closes what is past {cap} connections")
            assert descriptors(pid) < 256 - RESERVED_DESCRIPTORS // 2
            assert "server.max_connections: 400 an address, lowered to 64: 2 addresses" \
                in sidecar.output()
            trip_and_check_it_is_stored(sidecar, sidecar.uds_target)
    finally:
        sidecar.stop()


def test_the_soft_limit_is_raised_so_a_flood_leaves_tcp_itself_reachable(
        workdir: Path) -> None:
    hard = min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])  # room for the flood
    sidecar = SidecarProcess(workdir, CONFIG + "[server]\nmax_connections = 1000\n",
                             open_files=(256, hard))
    try:
        sidecar.start()
        pid = sidecar.process.pid  # type: ignore[union-attr]
        assert soft_limit(pid) == hard
        with flood("127.0.0.1", sidecar.port) as sockets:
            until(lambda: descriptors(pid) > FLOOD, "the sidecar holds every connection")
            assert closed_by_server(sockets) == 0
            trip_and_check_it_is_stored(sidecar, sidecar.tcp_target)
    finally:
        sidecar.stop()


def test_the_configured_cap_closes_connections_past_it(workdir: Path) -> None:
    sidecar = SidecarProcess(workdir, CONFIG + "[server]\nmax_connections = 10\n")
    try:
        sidecar.start()
        with flood("127.0.0.1", sidecar.port, 50) as sockets:
            until(lambda: closed_by_server(sockets) >= 40, "40 of 50 connections closed")
            assert closed_by_server(sockets) == 40  # the 10 it holds stay open
            trip_and_check_it_is_stored(sidecar, sidecar.uds_target)
    finally:
        sidecar.stop()


def test_a_flood_on_the_metrics_port_is_bounded_and_health_answers_after(
        workdir: Path) -> None:
    port = free_port()
    sidecar = SidecarProcess(
        workdir, CONFIG + f'[telemetry]\nmetrics_listen = "127.0.0.1:{port}"\n')
    try:
        sidecar.start()
        pid = sidecar.process.pid  # type: ignore[union-attr]
        before = descriptors(pid)
        with flood("127.0.0.1", port) as sockets:
            until(lambda: closed_by_server(sockets) >= FLOOD - MAX_CLIENTS,
                  f"the metrics endpoint closes what is past {MAX_CLIENTS} clients")
            assert descriptors(pid) <= before + MAX_CLIENTS + 2
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
            assert reply.status == 200  # the flood's places are free again
        trip_and_check_it_is_stored(sidecar, sidecar.uds_target)
    finally:
        sidecar.stop()


def test_a_limit_too_low_for_a_few_connections_an_address_refuses_to_serve(
        workdir: Path) -> None:
    """At a cap of 1, one executor on the Unix socket kept `essctl trigger` out (review
    45a): below MIN_CONNECTIONS an address the sidecar says so and does not serve."""
    limit = RESERVED_DESCRIPTORS + 2 * MIN_CONNECTIONS - 1
    (workdir / "ess.toml").write_text(CONFIG)
    result = subprocess.run(
        [*python_under((limit, limit)), "-m", "ess_sidecar", "serve", "--config",
         str(workdir / "ess.toml"), "--listen", f"127.0.0.1:{free_port()}", "--uds",
         str(workdir / "ess.sock"), "--state", str(workdir / "ess.db")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"server.max_connections: the open-files limit ({limit}) leaves room for" \
        f" {MIN_CONNECTIONS - 1} connection(s) an address on 2 address(es)" in result.stderr


@pytest.mark.parametrize(("limit", "said", "status"), [
    (RESERVED_DESCRIPTORS + 2 * MIN_CONNECTIONS - 1, "cannot serve: server.max_connections:"
     f" the open-files limit ({RESERVED_DESCRIPTORS + 2 * MIN_CONNECTIONS - 1}) leaves room"
     f" for {MIN_CONNECTIONS - 1} connection(s) an address on 2 address(es)", 2),
    (RESERVED_DESCRIPTORS + 2 * 50, "server.max_connections: 50 an address under this"
     " shell's open-files limit, lowered from 400", 0)])
def test_check_config_says_what_the_open_files_limit_does_to_serve(
        workdir: Path, limit: int, said: str, status: int) -> None:
    """Review 45: check-config passed a configuration that serve, under the same limit,
    refused to serve, or served with fewer connections an address."""
    (workdir / "ess.toml").write_text(CONFIG)
    result = subprocess.run(
        [*python_under((limit, limit)), "-m", "ess_sidecar", "check-config",
         str(workdir / "ess.toml"), "--listen", f"127.0.0.1:{free_port()}", "--uds",
         str(workdir / "ess.sock"), "--state", str(workdir / "ess.db")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == status, result.stderr
    assert said in result.stdout + result.stderr


def test_metrics_clients_that_hang_up_free_their_places_with_stderr_unread(
        workdir: Path) -> None:
    """socketserver printed each failed request's traceback to stderr from its thread:
    with stderr unread, 32 clients that hung up mid-request held every place for good,
    and /healthz was refused (review 45a)."""
    port = free_port()
    sidecar = SidecarProcess(
        workdir, CONFIG + f'[telemetry]\nmetrics_listen = "127.0.0.1:{port}"\n')
    read_end, write_end = full_pipe()
    try:
        sidecar.start(output=write_end)
        with flood("127.0.0.1", port, 2 * MAX_CLIENTS) as sockets:
            for sock in sockets:
                sock.sendall(b"GET /metr")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        def healthy() -> bool:  # noqa: E306 - a closure over port
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz",
                                            timeout=2) as reply:
                    return reply.status == 200
            except OSError:
                return False
        until(healthy, "/healthz answered once the clients hung up")
    finally:
        sidecar.stop()
        os.close(read_end)
        os.close(write_end)
