"""A real `ess-sidecar serve` subprocess for tests of the sidecar and of its clients."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .adapters.descriptors import ready

SERVICE = "ess.v1.GuardService"


def full_pipe() -> tuple[int, int]:
    """A pipe whose buffer is full, its write end blocking again: a stderr nobody reads."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"filler\n" * 512)
    os.set_blocking(write_end, True)
    return read_end, write_end


def read_in_background(read_end: int) -> tuple[threading.Thread, bytearray]:
    """A thread (started) that reads the pipe until its end, and what it has read."""
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(read_end, 1 << 16):
            received.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    return reader, received


def until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Poll `condition` until it holds; a deadline, not a sleep to wait for it."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        time.sleep(0.05)


def malformed_timeout_answered(port: int, within_s: float) -> bool:
    """A health call whose `grpc-timeout` is not one: gRPC's core writes an error line for
    it to descriptor 2 itself. Whether the call is answered (reset or trailers) in time."""
    import h2.config  # noqa: PLC0415 - a test dependency: raw HTTP/2
    import h2.connection  # noqa: PLC0415
    import h2.events  # noqa: PLC0415
    with socket.create_connection(("127.0.0.1", port), timeout=within_s) as sock:
        peer = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        peer.initiate_connection()
        stream = peer.get_next_available_stream_id()
        peer.send_headers(stream, [(":method", "POST"), (":scheme", "http"),
                                   (":path", "/grpc.health.v1.Health/Check"),
                                   (":authority", "ess"), ("content-type", "application/grpc"),
                                   ("te", "trailers"), ("grpc-timeout", "soon")])
        peer.send_data(stream, b"\x00\x00\x00\x00\x00", end_stream=True)
        sock.sendall(peer.data_to_send())
        try:
            while data := sock.recv(1 << 16):
                for event in peer.receive_data(data):
                    if isinstance(event, h2.events.StreamReset | h2.events.StreamEnded) \
                            and event.stream_id == stream:
                        return True
                sock.sendall(peer.data_to_send())
        except TimeoutError:
            pass
    return False


def python_under(open_files: tuple[int, int] | None, file_size: int | None = None) -> list[str]:
    """The interpreter's command, started under `open_files` (soft, hard) and `file_size`
    if given: the limits set, then the interpreter exec'd with the arguments that follow.
    `file_size`: bytes a file may hold (SIGXFSZ ignored): a write past it fails, as on a
    full disk, and one over bytes written already goes through, as there."""
    limits = [] if open_files is None else \
        [f"resource.setrlimit(resource.RLIMIT_NOFILE, {open_files})"]
    if file_size is not None:
        limits += ["signal.signal(signal.SIGXFSZ, signal.SIG_IGN)",
                   f"resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size}, {file_size}))"]
    if not limits:
        return [sys.executable]
    return [sys.executable, "-c", f"import os, resource, signal, sys; {'; '.join(limits)};"
            " os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SidecarProcess:
    """One sidecar on a Unix socket and a free TCP port, its files in `workdir`. Its stop
    does not drain (`drain_s` 0) unless asked: `drain_s=None` keeps the configured one."""

    def __init__(self, workdir: Path, config: str = "", drain_s: float | None = 0.0,
                 open_files: tuple[int, int] | None = None) -> None:
        """`open_files`: its (soft, hard) limit on open files, if not this process's.
        `file_size` (set before a start): the bytes a file may hold, as if the disk were
        full past them (python_under)."""
        self.workdir = workdir
        self.open_files = open_files
        self.file_size: int | None = None
        self.config = workdir / "ess.toml"
        self.config.write_text(config)
        self.state = workdir / "ess.db"
        self.uds = workdir / "ess.sock"
        self.log = workdir / "sidecar.log"
        self.port = free_port()
        self.drain_s = drain_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def tcp_target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def uds_target(self) -> str:
        return f"unix:{self.uds}"

    def start(self, timeout_s: float = 20.0, output: int | None = None) -> SidecarProcess:
        """Start and block until health says SERVING; the log is in the error if not.
        `output`: a file descriptor for its stdout and stderr, in place of `log`."""
        environment = dict(os.environ)
        if self.drain_s is not None:
            environment["ESS_SHUTDOWN__DRAIN_S"] = str(self.drain_s)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*python_under(self.open_files, self.file_size), "-m", "ess_sidecar", "serve",
                 "--config", str(self.config), "--listen", self.tcp_target, "--uds", str(self.uds),
                 "--state", str(self.state)], stdout=log if output is None else output,
                stderr=subprocess.STDOUT, env=environment)
        try:
            self.wait_serving(timeout_s)
        except grpc.RpcError as error:
            raise AssertionError(f"sidecar did not become SERVING:\n{self.output()}") from error
        return self

    def wait_serving(self, timeout_s: float) -> None:
        """wait_for_ready waits for the socket to open: no sleeps, one deadline. Asked on
        the Unix socket, which is never TLS (health needs no token)."""
        with grpc.insecure_channel(self.uds_target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE),
                timeout=timeout_s, wait_for_ready=True)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def children(self) -> list[int]:
        """The pids of the running sidecar's child processes (its journal's syncer, the
        fan-out process)."""
        assert self.process is not None
        children: list[int] = []
        with contextlib.suppress(FileNotFoundError):  # the process ended meanwhile
            for task in list(Path(f"/proc/{self.process.pid}/task").iterdir()):
                with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
                    children += [int(c) for c in (task / "children").read_text().split()]
        return children

    def children_named(self, word: str) -> list[int]:
        """The pids of its children whose command line holds `word` ("grpc.fanout",
        "storage.syncer")."""
        named = []
        for pid in self.children():
            with contextlib.suppress(FileNotFoundError):
                if word.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    named.append(pid)
        return named

    def kill(self, timeout_s: float = 10.0, resume: Iterable[int] = ()) -> None:
        """SIGKILL the sidecar, and wait until it and its syncer have exited: the syncer
        outlives it to seal what it wrote (syncer.Syncer.seal_orphaned), and files
        damaged before that is done would be sealed over. `resume`: children a test
        stopped (SIGSTOP: a stalled disk), continued once the sidecar is dead."""
        assert self.process is not None
        children = []
        if self.process.poll() is None:
            for pid in self.children():
                with contextlib.suppress(ProcessLookupError):
                    children.append(os.pidfd_open(pid))
        try:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=timeout_s)
            for pid in resume:
                os.kill(pid, signal.SIGCONT)
            for exited in children:
                if not ready(exited, timeout_s):
                    raise TimeoutError(f"the sidecar's syncer outlived it by {timeout_s} s")
        finally:
            for exited in children:
                os.close(exited)

    def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait for the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
