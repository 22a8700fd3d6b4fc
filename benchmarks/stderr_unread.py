"""Calls while stderr is full and nobody reads it (known gap 19).

gRPC's core writes an error line to file descriptor 2 for each health call with a
malformed `grpc-timeout` header (no token needed). A real `ess-sidecar serve` per subject,
its stdout and stderr a pipe: the baseline's is read by a thread; the other's is full
(64 KB written before it starts) and never read. Per subject: how long `--malformed` such
calls take to be answered, one after another, and the latency of `--triggers` Triggers on
another connection, `--between` more malformed calls before each.

    python benchmarks/stderr_unread.py [--malformed 200] [--triggers 40] [--between 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ess.v1 import guard_pb2 as pb  # noqa: E402
from ess.v1 import guard_pb2_grpc as pb_grpc  # noqa: E402
from ess_sidecar.testing import (SidecarProcess, full_pipe,  # noqa: E402
                                 malformed_timeout_answered, read_in_background)


def measure(workdir: Path, unread: bool, args: argparse.Namespace) -> tuple[float, list[float]]:
    """(seconds for the malformed calls, each Trigger's latency in seconds)."""
    read_end, write_end = full_pipe() if unread else os.pipe()
    if not unread:
        read_in_background(read_end)
    sidecar = SidecarProcess(workdir, "")
    try:
        sidecar.start(output=write_end)
        started = time.perf_counter()
        for _ in range(args.malformed):
            if not malformed_timeout_answered(sidecar.port, within_s=10):
                raise SystemExit("a malformed call was not answered within 10 s")
        malformed_s = time.perf_counter() - started
        latencies = []
        with grpc.insecure_channel(sidecar.uds_target) as channel:
            stub = pb_grpc.GuardServiceStub(channel)
            for number in range(args.triggers):
                for _ in range(args.between):
                    malformed_timeout_answered(sidecar.port, within_s=10)
                scope = pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id=f"s{number}")
                started = time.perf_counter()
                stub.Trigger(pb.TriggerRequest(scope=scope, reason="stop"), timeout=30)
                latencies.append(time.perf_counter() - started)
        return malformed_s, latencies
    finally:
        sidecar.kill()
        os.close(write_end)
        if unread:
            os.close(read_end)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--malformed", type=int, default=200)
    parser.add_argument("--triggers", type=int, default=40)
    parser.add_argument("--between", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.malformed} malformed health calls, then {args.triggers} Triggers with"
          f" {args.between} more before each")
    print(f"{'stderr':<16} {'malformed (s)':>14} {'Trigger p50 (ms)':>17} {'p99 (ms)':>9}"
          f" {'max (ms)':>9}")
    with tempfile.TemporaryDirectory(prefix="ess-") as root:
        for name, unread in (("read (baseline)", False), ("full, unread", True)):
            workdir = Path(root) / name.split()[0].strip(",")
            workdir.mkdir()
            malformed_s, latencies = measure(workdir, unread, args)
            ms = sorted(x * 1000 for x in latencies)
            p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
            print(f"{name:<16} {malformed_s:>14.2f} {statistics.median(ms):>17.1f}"
                  f" {p99:>9.1f} {ms[-1]:>9.1f}")


if __name__ == "__main__":
    main()
