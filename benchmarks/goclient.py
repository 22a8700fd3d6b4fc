"""The Go client for check_latency.py --client go: clients/go/cmd/essbench, driven by segments.

A Python client burns about 200 µs of CPU per stream message on a 2-core machine, as much as the
server, so its figures say more about the client than about the server. A Go executor's figures
need a Go client. essbench keeps one channel (and, for the stream API, one long-lived
CheckOrderStream) for the life of its process, as the Python clients do; each "N" line on its
stdin runs N calls, one in flight, and it answers one JSON line with each call's latency in ns
(timed in Go around the call only, its GC paused during the segment). So check_latency.py keeps
its ABBA interleaving, server CPU sampling and percentiles unchanged: it only swaps the object
whose run(n) returns latencies.
"""

from __future__ import annotations

import json
import os
import subprocess

MODULE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "clients", "go")


class GoClientError(Exception):
    """The Go client could not be built, or it failed (RPC error, unexpected answer)."""


def build(out_dir: str, command: str = "essbench") -> tuple[str, str]:
    """go build ./cmd/COMMAND into out_dir; returns (binary, "go1.x, grpc-go vX")."""
    binary = os.path.join(out_dir, command)
    try:
        done = subprocess.run(["go", "build", "-o", binary, f"./cmd/{command}"], cwd=MODULE,
                              capture_output=True, text=True)
    except FileNotFoundError as error:
        raise GoClientError(f"the Go client ({command}) needs the go tool on PATH: {error}") \
            from None
    if done.returncode != 0:
        raise GoClientError(f"go build ./cmd/{command} in {MODULE} failed:\n{done.stderr}")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    return binary, version.stdout.strip()


class SegmentProcess:
    """A Go benchmark client (essbench --segments, peersbench) kept for many segments: one
    line on its stdin runs a segment, one JSON line on its stdout answers it ({"error": ...}
    and exit when it failed); EOF on its stdin closes its streams and connections."""

    def __init__(self, argv: list[str]) -> None:
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True)

    def segment(self, line: str) -> dict:
        """Sends one line, returns the answer; GoClientError if the client failed."""
        try:
            self._proc.stdin.write(f"{line}\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # it has exited; its last line says why
        return self.answer()

    def answer(self) -> dict:
        """The next JSON line it prints (one it prints unasked, e.g. that it is ready)."""
        answer = self._proc.stdout.readline()
        reply = json.loads(answer) if answer else {"error": f"exited with {self._proc.wait()}"}
        if "error" in reply:
            raise GoClientError(f"Go client: {reply['error']}")
        return reply

    def close(self) -> None:
        try:
            self._proc.stdin.close()  # EOF: it closes its streams and connections, then exits
        except BrokenPipeError:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()


class GoClient(SegmentProcess):
    """The same interface as check_latency's UnaryClient / StreamClient: run(n), close()."""

    def __init__(self, binary: str, target: str, api: str) -> None:
        super().__init__([binary, "--target", target, "--api", api, "--segments"])

    def run(self, n: int) -> list[int]:
        return self.segment(str(n))["latencies_ns"]
