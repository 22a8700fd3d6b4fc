"""How far apart the journal's fsyncs are under load: what a power cut can take.

The journal's syncer (a child process of the sidecar; docs/design.md, "The journal's
syncer") fsyncs every `store.journal_sync_interval_s` (10 ms) while records come. This
serves the sidecar as shipped on a Unix socket, drives it with benchmarks/peers' Go client
(`--in-flight` CheckOrderStreams, one request in flight on each) for `--seconds`, and
traces the syncer's fsync calls with strace (`-e trace=fsync -ttt`, on the syncer alone:
the serving process is not traced; each of the syncer's system calls stops for the tracer,
which slows the syncer a little, not the decisions). It prints the gaps between
consecutive fsyncs (p50/p90/p99/max) and the calls a second served meanwhile.

    python benchmarks/fsync_cadence.py [--in-flight N] [--seconds S]

Needs strace (Debian: `apt-get install strace`) and Go (the client is built on first use).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
sys.path.insert(0, os.path.join(REPO, "benchmarks", "peers"))

import peer_clients  # noqa: E402
import workload  # noqa: E402
from check_latency import and_children, start_server, stop_server, wait_serving  # noqa: E402


def fsync_times(trace: str) -> list[float]:
    """The start times (s) of the fsync calls in an `strace -ttt` log."""
    times = []
    with open(trace) as f:
        for line in f:
            stamp, _, call = line.partition(" ")
            if call.startswith("fsync("):
                times.append(float(stamp))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if shutil.which("strace") is None:
        raise SystemExit("strace is needed: apt-get install strace")
    tmp = tempfile.mkdtemp(prefix="ess-fsync-cadence-")
    with open(f"{tmp}/ess.toml", "w") as f:
        f.write(workload.config(1_000_000))  # caps far above what a run makes working
    server = start_server("sidecar", ["-m", "ess_sidecar", "serve", "--config",
                                      f"{tmp}/ess.toml", "--state", f"{tmp}/ess.db"],
                          tmp, True)
    client = tracer = None
    try:
        wait_serving(server, 30)
        server.settler = workload.Settler(server.target("uds"))
        server.settle()  # equity known, nothing working
        [syncer] = and_children(server.proc.pid)[1:]
        binary, go_version = peer_clients.build_go()
        client = peer_clients.GoClient(binary, "stream", server.target("uds"), args.in_flight)
        client.run(1.0)  # warm up, untraced
        trace = f"{tmp}/fsync.trace"
        tracer = subprocess.Popen(["strace", "-ttt", "-e", "trace=fsync", "-o", trace, "-p",
                                   str(syncer)], stderr=subprocess.DEVNULL)
        latencies, wall_ns, _ = client.run(args.seconds)
    finally:
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(10)
        if client is not None:
            client.close()
        stop_server(server)
    times = fsync_times(trace)
    gaps = sorted((b - a) * 1000 for a, b in zip(times, times[1:]))
    if len(gaps) < 10:
        raise SystemExit(f"only {len(times)} fsyncs traced: {trace}")

    def pct(p: float) -> float:
        return gaps[min(len(gaps) - 1, int(p * len(gaps)))]

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load"
          f" {os.getloadavg()[0]:.2f}; Go client ({go_version}), CheckOrderStream over UDS,"
          f" {args.in_flight} in flight for {args.seconds:g} s")
    print(f"{len(latencies) * 1e9 / wall_ns:.0f} calls/s; {len(times)} fsyncs by the syncer;"
          f" ms apart: p50 {pct(.5):.1f}  p90 {pct(.9):.1f}  p99 {pct(.99):.1f}"
          f"  max {gaps[-1]:.1f}  (store.journal_sync_interval_s: 10 ms)")


if __name__ == "__main__":
    main()
