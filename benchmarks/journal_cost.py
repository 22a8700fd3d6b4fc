"""What the journal costs a served check: the sidecar as shipped, the same sidecar patched not
to journal, and a bare grpcio server, in one interleaved run.

An allowed order is recorded in the journal (one `write(2)`) before its answer goes out, and
the journal's syncer (a child process) fsyncs it and rewrites its seal every 10 ms
(docs/design.md, "The journal's syncer"). In process, the record costs a few microseconds
(`decision_cost.py`, "guard.check + journal"); this measures what it costs where it runs,
in the served process.

Method. Every subject is a subprocess served on a Unix socket; the Go client
(clients/go/cmd/essbench, as check_latency.py --client go) sends CheckOrderStream (or, with
--api unary, CheckOrder), one call in flight. Each round runs every subject, the order
reversed every other round, so drift on a shared machine spreads over all of them. A
subject's round is --segments segments of --calls calls; the sidecars' working orders are
ended by a SyncPositions between segments (benchmarks/workload.py), off the timed path and
outside the CPU window. Server CPU is the process's utime+stime over its segments (/proc).
Subjects:

- bare: benchmarks/bare_server.py;
- sidecar: `python -m ess_sidecar serve`, as shipped;
- sidecar, timed: the same, with `Guard.check` timed inside the process (perf_counter_ns
  around the clock reading, `engine.check` and the journal record); it prints their
  percentiles at the end;
- sidecar, no journal: launched by this file with two patches, `Guard.check` records
  nothing and the journal's syncer is not started. NOT SAFE, a measuring
  device only: an order it allowed is not on record;
- sidecar, fsync every 50 ms: as shipped, with `store.journal_sync_interval_s` 0.05 (the
  shipped 0.01 bounds what a power loss can take; both survive SIGKILL): how much of the
  journal's cost is the group commit's cadence;
- sidecar, constant decision: launched by this file, `Guard.check` answers every order
  with the decision it made for the first one (no engine, no journal). NOT SAFE, a
  measuring device only: what the gRPC adapter, the mapping and telemetry cost;
- sidecar, no group commit: records written as shipped, but the syncer is not started
  (nothing is fsynced). NOT SAFE across a power cut, a measuring device only: what the
  group commit costs (a thread did it until stop 28: benchmarks/gil_wake.py says what
  that cost the serving thread);
- sidecar, asyncio: as shipped, but with `server.event_loop = "asyncio"` (the shipped
  loop is uvloop);
- bare, uvloop: benchmarks/bare_server.py on uvloop, the sidecar's loop.

With --in-flight N (N > 1) the client is benchmarks/peers' Go client (peersbench) with N
CheckOrderStreams, one request in flight on each, for segments of --segment-s seconds:
the figures are then calls/s and CPU per message under concurrency.

Before its rounds, each server's CPU while idle is measured over --idle seconds: the
sidecar's timers run; its journal's syncer sleeps after an interval with no record.
Server CPU counts the server's child processes too (the syncer).

    python benchmarks/journal_cost.py [--api stream|unary] [--rounds N] [--segments N]
        [--calls N] [--idle S] [--in-flight N [--segment-s S]]
"""

from __future__ import annotations

import argparse
import atexit
import functools
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

PATCHED = "--serve-patched"  # argv[1] of this file when it runs a patched sidecar


def serve_patched(mode: str, argv: list[str]) -> int:
    """Run `ess_sidecar` (argv: its arguments) with the patches `mode` names."""
    from ess_sidecar import cli, service
    from ess_sidecar.adapters.storage import journal
    from ess_sidecar.domain.commands import Admitted

    if mode == "no-group-commit":
        journal.FileJournal.start = lambda self: None
    elif mode == "constant-decision":
        first: list[object] = []

        def constant(self: service.Guard, order: object) -> object:
            if not first:
                first.append(self.engine.check(order, self._clock.now()))
            return first[0]
        service.Guard.check = constant
        journal.FileJournal.start = lambda self: None
    elif mode == "no-journal":
        def unrecorded(self: service.Guard, order: object) -> object:
            return self.engine.check(order, self._clock.now())
        service.Guard.check = unrecorded
        journal.FileJournal.start = lambda self: None
    elif mode.startswith("timed:"):
        out, clock = mode.split(":", 1)[1], time.perf_counter_ns
        samples: dict[str, list[int]] = {"check": [], "clock": [], "engine": [], "record": []}

        def timed(self: service.Guard, order: object) -> object:
            start = clock()
            now = self._clock.now()
            read = clock()
            decision = self.engine.check(order, now)
            decided = clock()
            if decision.allowed:
                self._record(Admitted(order, now, decision.decision_id))
            end = clock()
            for name, ns in (("check", end - start), ("clock", read - start),
                             ("engine", decided - read), ("record", end - decided)):
                samples[name].append(ns)
            return decision
        service.Guard.check = timed
        atexit.register(lambda: _dump(samples, out))
    else:
        raise SystemExit(f"unknown patch {mode!r}")
    sys.argv = ["ess_sidecar", *argv]
    return cli.main()


def _dump(samples: dict[str, list[int]], path: str) -> None:
    with open(path, "w") as f:
        json.dump({name: sorted(values) for name, values in samples.items()}, f)


class InFlight:
    """benchmarks/peers' Go client (peersbench): `in_flight` streams (or unary callers),
    one request in flight on each, for `seconds` per run; run(n) ignores n."""

    def __init__(self, binary: str, api: str, in_flight: int, seconds: float,
                 target: str) -> None:
        import peer_clients  # noqa: PLC0415 - benchmarks/peers, on the path in main()
        self._client = peer_clients.GoClient(binary, api, target, in_flight)
        self._seconds = seconds

    def run(self, calls: int) -> list[int]:
        del calls
        latencies, _, _ = self._client.run(self._seconds)
        return latencies

    def close(self) -> None:
        self._client.close()


def pct(values: list[int], p: float) -> float:
    return values[min(len(values) - 1, int(p * len(values)))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--calls", type=int, default=400, help="per segment (at most 500)")
    parser.add_argument("--api", choices=("stream", "unary"), default="stream")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU measured")
    parser.add_argument("--in-flight", type=int, default=1,
                        help="streams with a request in flight each (peersbench above 1)")
    parser.add_argument("--segment-s", type=float, default=1.0,
                        help="with --in-flight above 1: seconds per segment")
    args = parser.parse_args()
    if not 0 < args.calls <= 500:
        parser.error("--calls: 1 to 500 (the shipped working-order cap per strategy)")

    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import workload
    from check_latency import start_server, stop_server, wait_serving
    from goclient import GoClient, build

    tmp = tempfile.mkdtemp(prefix="ess-journal-cost-")
    # A segment in flight for seconds makes thousands of working orders: caps far above.
    limits = workload.config(args.calls if args.in_flight == 1 else 1_000_000)
    with open(f"{tmp}/ess.toml", "w") as f:
        f.write(limits)
    with open(f"{tmp}/ess-50ms.toml", "w") as f:
        f.write(limits + "[store]\njournal_sync_interval_s = 0.05\n")
    with open(f"{tmp}/ess-asyncio.toml", "w") as f:
        f.write(limits + '[server]\nevent_loop = "asyncio"\n')
    timings = f"{tmp}/timings.json"
    this = os.path.abspath(__file__)

    def sidecar(name: str, *patch: str, config: str = "ess.toml") -> list[str]:
        launcher = [this, PATCHED, *patch] if patch else ["-m", "ess_sidecar"]
        return [*launcher, "serve", "--config", f"{tmp}/{config}", "--state",
                f"{tmp}/{name}.db"]

    subjects = {"bare": ([os.path.join(REPO, "benchmarks", "bare_server.py")], False),
                "sidecar": (sidecar("shipped"), True),
                "sidecar, timed": (sidecar("timed", f"timed:{timings}"), True),
                "sidecar, no journal": (sidecar("unjournaled", "no-journal"), True),
                "sidecar, fsync every 50 ms": (sidecar("50ms", config="ess-50ms.toml"), True),
                "sidecar, constant decision": (sidecar("constant", "constant-decision"), True),
                "sidecar, no group commit": (sidecar("unsynced", "no-group-commit"), True),
                "sidecar, asyncio": (sidecar("asyncio", config="ess-asyncio.toml"), True),
                "bare, uvloop": ([os.path.join(REPO, "benchmarks", "bare_server.py"),
                                  "--event-loop", "uvloop"], False)}
    rpc = "CheckOrderStream" if args.api == "stream" else "CheckOrder"
    if args.in_flight == 1:
        binary, go_version = build(tmp)
        client_for = functools.partial(GoClient, binary, api=args.api)
        shape = f"one in flight; {args.rounds} rounds x {args.segments} segments x" \
            f" {args.calls} calls per subject"
    else:
        sys.path.insert(0, os.path.join(REPO, "benchmarks", "peers"))
        import peer_clients
        binary, go_version = peer_clients.build_go()
        client_for = functools.partial(InFlight, binary, args.api, args.in_flight,
                                       args.segment_s)
        shape = f"{args.in_flight} in flight; {args.rounds} rounds x {args.segments}" \
            f" segments x {args.segment_s:g} s per subject"
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load"
          f" {os.getloadavg()[0]:.2f}; Go client ({go_version}), {rpc} over UDS, {shape}")
    servers, clients = {}, {}
    try:
        for name, (argv, is_sidecar) in subjects.items():
            servers[name] = server = start_server(name.replace(", ", "-").replace(" ", "-"),
                                                  argv, tmp, is_sidecar)
            wait_serving(server, 30)
            if is_sidecar:
                server.settler = workload.Settler(server.target("uds"))
                server.settle()
            clients[name] = client_for(server.target("uds"))
        before = {name: server.cpu_seconds() for name, server in servers.items()}
        time.sleep(args.idle)  # not a wait for something: what an idle server spends
        idle = {name: (server.cpu_seconds() - before[name]) / args.idle
                for name, server in servers.items()}
        latencies = {name: [] for name in servers}
        cpu, wall = dict.fromkeys(servers, 0.0), dict.fromkeys(servers, 0.0)
        for r in range(args.rounds):
            for name in (list(servers) if r % 2 == 0 else list(reversed(servers))):
                server, client = servers[name], clients[name]
                client.run(min(100, args.calls))  # warm this connection again
                server.settle()
                for _ in range(args.segments):
                    before, start = server.cpu_seconds(), time.perf_counter()
                    latencies[name] += client.run(args.calls)
                    wall[name] += time.perf_counter() - start
                    cpu[name] += server.cpu_seconds() - before
                    server.settle()
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            stop_server(server)  # SIGTERM: the timed sidecar writes its timings at exit

    print(f"\n{'server':<27} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9} {'CPU µs/msg':>11}"
          f" {'p50 / bare':>11} {'idle CPU ms/s':>14} {'calls/s':>8}")
    bare = sorted(latencies["bare"])
    for name, values in latencies.items():
        values.sort()
        print(f"{name:<27} {pct(values, .5):8.1f} {pct(values, .99):8.1f}"
              f" {pct(values, .999):9.1f} {cpu[name] * 1e6 / len(values):11.1f}"
              f" {pct(values, .5) / pct(bare, .5):11.2f} {idle[name] * 1000:14.1f}"
              f" {len(values) / wall[name]:8.0f}")
    with open(timings) as f:
        inside = json.load(f)
    print("\ninside the timed sidecar (µs; the record is made for allowed orders: all of them)")
    for name, values in inside.items():
        print(f"  {name:<8} p50 {pct(values, .5):7.1f}  p90 {pct(values, .9):7.1f}"
              f"  p99 {pct(values, .99):7.1f}  n {len(values)}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == PATCHED:
        sys.exit(serve_patched(sys.argv[2], sys.argv[3:]))
    main()
