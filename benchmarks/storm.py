"""Decisions during a storm of transitions, with watchers, and during /metrics scrapes.

One sidecar subprocess (SQLite state, fsync on every transition, telemetry on as shipped,
its Prometheus endpoint on), measured by the Go client (clients/go/cmd/essbench, one call
in flight over the Unix socket), phase by phase in interleaved rounds:

- quiet: checks alone;
- storm: checks while this process sends --rate commands a second (Trigger, then a forced
  Reset, of 20 strategy scopes no measured order is in: --rate transitions a second);
- storm+N watchers, for each N in --watchers: the same storm with N WatchState subscribers
  (clients/go/cmd/esswatchers), --stalled of which never read, served by the sidecar;
- storm+N fan-out: the same, the watchers served by the fan-out process
  (`watch.fanout_uds`, ess_sidecar/adapters/grpc/fanout.py), which the sidecar feeds one
  stream; --no-fanout leaves these phases out;
- scrape: checks while /metrics is fetched every --scrape-interval seconds;
- bare quiet, bare storm: the floor. The same checks and the same storm against
  benchmarks/bare_server.py, a grpc.aio server with no logic whose Trigger and Reset change
  nothing but a counter: what 100 commands a second cost the checks' p99 when the commands
  cost only their transport. Where the bare storm/quiet ratio exceeds a budget, no grpc.aio
  server meets that budget on this machine.

What must hold (docs/design.md, "Performance budgets"; figures, never timed unit tests),
for the watchers served by the sidecar and by the fan-out alike:
- storm+200 watchers: CheckOrder p99 <= 2x its p99 in the storm with no watchers;
- storm+1000 watchers: the sidecar stays SERVING and keeps up (>= 95 % of the storm's
  transitions/s, every reading watcher has every transition by the end of the phase);
- storm: p99 <= 1.2x quiet's; scrape: p99 <= 1.1x quiet's.

    python benchmarks/storm.py [--calls 4000] [--rounds 3] [--rate 100] [--watchers 200 1000]
                               [--no-fanout]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import workload  # noqa: E402
from benchmarks.check_latency import SERVICE, Server, free_port, start_server, stop_server, \
    wait_serving  # noqa: E402
from benchmarks.goclient import GoClient, SegmentProcess, build  # noqa: E402
from ess.v1 import guard_pb2 as pb  # noqa: E402
from ess.v1 import guard_pb2_grpc as pb_grpc  # noqa: E402

STORM_SCOPES = 20
HERE = os.path.dirname(os.path.abspath(__file__))


class Storm(threading.Thread):
    """--rate commands a second, alternately Trigger and a forced Reset of one of
    STORM_SCOPES strategy scopes; each one's latency is kept. Paced by the clock: a late
    command is sent at once, never skipped."""

    def __init__(self, target: str, rate: float) -> None:
        super().__init__(daemon=True, name="storm")
        self._channel = grpc.insecure_channel(target)
        self._stub = pb_grpc.GuardServiceStub(self._channel)
        self._rate = rate
        self._halt = threading.Event()
        self.latencies_ns: list[int] = []
        self.errors: list[str] = []

    def run(self) -> None:
        start, n = time.monotonic(), 0
        while not self._halt.is_set():
            scope = pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id=f"storm-{n // 2 % STORM_SCOPES}")
            sent = time.perf_counter_ns()
            try:
                if n % 2 == 0:
                    self._stub.Trigger(pb.TriggerRequest(scope=scope, reason="storm"), timeout=10)
                else:
                    self._stub.Reset(pb.ResetRequest(scope=scope, reason="storm over",
                                                     force=True), timeout=10)
            except grpc.RpcError as error:
                self.errors.append(f"{error.code().name}: {error.details()}")
            self.latencies_ns.append(time.perf_counter_ns() - sent)
            n += 1
            self._halt.wait(max(0.0, start + n / self._rate - time.monotonic()))

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self._channel.close()


class Scraper(threading.Thread):
    def __init__(self, url: str, interval_s: float) -> None:
        super().__init__(daemon=True, name="scraper")
        self._url, self._interval_s = url, interval_s
        self._halt = threading.Event()
        self.scrapes, self.errors = 0, []

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                with urllib.request.urlopen(self._url, timeout=10) as reply:
                    reply.read()
                self.scrapes += 1
            except OSError as error:
                self.errors.append(repr(error))
            self._halt.wait(self._interval_s)

    def stop(self) -> None:
        self._halt.set()
        self.join()


@dataclass
class Phase:
    name: str
    watchers: int = 0
    storm: bool = False
    scrape: bool = False
    latencies: list[int] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    transitions: int = 0
    storm_ns: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    serving: bool = True
    kept_up: bool = True
    bare: bool = False  # against the bare server: the floor
    fanout: bool = False  # the watchers served by the fan-out process

    def summary(self) -> dict:
        ordered, n = sorted(self.latencies), len(self.latencies)
        pct = {q: ordered[max(0, math.ceil(f * n) - 1)] / 1000
               for q, f in (("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999))}
        storm = sorted(self.storm_ns)
        return {"phase": self.name, "calls": n, **pct,
                "server_cpu_us_per_call": self.cpu_s * 1e6 / max(n, 1),
                "transitions_per_s": self.transitions / self.wall_s if self.wall_s else 0.0,
                "command_p99_ms": storm[max(0, math.ceil(0.99 * len(storm)) - 1)] / 1e6
                if storm else None, "serving": self.serving, "kept_up": self.kept_up,
                "notes": sorted(set(self.notes))}


def version(stub: pb_grpc.GuardServiceStub) -> int:
    return stub.GetState(pb.GetStateRequest(), timeout=30).state_version


def serving(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def run_phase(phase: Phase, server: Server, client: GoClient, calls: int, args,
              watchers_binary: str, metrics_url: str) -> None:
    target = server.target("uds")
    watchers = None
    if phase.watchers:
        watched = f"unix:{server.uds}.fanout" if phase.fanout else target
        watchers = SegmentProcess([watchers_binary, "--target", watched, "--watchers",
                                   str(phase.watchers), "--stalled", str(args.stalled)])
        watchers.answer()  # {"ready": n}: every reader has its snapshot
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GuardServiceStub(channel)
        server.settle()
        storm = Storm(target, args.rate) if phase.storm else None
        scraper = Scraper(metrics_url, args.scrape_interval) if phase.scrape else None
        before, cpu, start = version(stub), server.cpu_seconds(), time.perf_counter_ns()
        for helper in (storm, scraper):
            if helper is not None:
                helper.start()
        try:
            phase.latencies += client.run(calls)
        finally:
            for helper in (storm, scraper):
                if helper is not None:
                    helper.stop()
        wall_s = (time.perf_counter_ns() - start) / 1e9
        phase.cpu_s += server.cpu_seconds() - cpu
        phase.wall_s += wall_s
        made = version(stub) - before
        phase.transitions += made
        if storm is not None:
            phase.storm_ns += storm.latencies_ns
            phase.notes += storm.errors
            if made < 0.95 * args.rate * wall_s:
                phase.kept_up = False
                phase.notes.append(f"{made} transitions in {wall_s:.1f} s, asked"
                                   f" {args.rate:g}/s")
        if scraper is not None:
            phase.notes += scraper.errors
        phase.serving = phase.serving and serving(target)
        if watchers is not None:
            seen = caught_up(watchers, version(stub))
            watchers.close()
            phase.notes += [f"watcher streams ended: {code} x{n}"
                            for code, n in seen["ended"].items()]
            if seen["lowest_version"] < seen["latest"]:
                phase.kept_up = False
                phase.notes.append(f"a reading watcher was at version {seen['lowest_version']}"
                                   f" of {seen['latest']} 10 s after the storm")


def caught_up(watchers: SegmentProcess, latest: int, deadline_s: float = 10.0) -> dict:
    """The watchers' tally once every reader has `latest`, or at the deadline."""
    deadline = time.monotonic() + deadline_s
    while (seen := watchers.segment(""))["lowest_version"] < latest \
            and time.monotonic() < deadline:
        time.sleep(0.05)  # the readers drain their streams meanwhile
    seen["latest"] = latest
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=4000, help="checks per phase and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100.0, help="storm transitions/s")
    parser.add_argument("--watchers", type=int, nargs="*", default=[200, 1000])
    parser.add_argument("--stalled", type=int, default=10, help="watchers that never read")
    parser.add_argument("--scrape-interval", type=float, default=1.0)
    parser.add_argument("--api", choices=("unary", "stream"), default="unary")
    parser.add_argument("--no-fanout", dest="fanout", action="store_false",
                        help="no phases with the watchers served by the fan-out process")
    parser.add_argument("--json", help="also write every figure to this file")
    args = parser.parse_args(argv)
    phases = [Phase("quiet"), Phase("storm", storm=True),
              *[Phase(f"storm+{n} watchers", watchers=n, storm=True) for n in args.watchers],
              *[Phase(f"storm+{n} fan-out", watchers=n, storm=True, fanout=True)
                for n in (args.watchers if args.fanout else ())],
              Phase("scrape", scrape=True), Phase("bare quiet", bare=True),
              Phase("bare storm", storm=True, bare=True)]
    with tempfile.TemporaryDirectory(prefix="ess-storm-") as tmp:
        essbench, go_version = build(tmp)
        watchers_binary, _ = build(tmp, "esswatchers")
        print(f"client: Go ({go_version}); {args.api}, one call in flight, Unix socket")
        metrics = f"127.0.0.1:{free_port()}"
        most = max([1, *args.watchers]) + 1
        with open(f"{tmp}/ess.toml", "w") as f:  # as many watchers as a phase opens
            f.write(workload.config(args.calls) + f"[watch]\nmax_watchers = {most}\n"
                    f'fanout_uds = "{tmp}/sidecar.sock.fanout"\nfanout_max_watchers = {most}\n')
        server = start_server("sidecar", ["-m", "ess_sidecar", "serve", "--config",
                                          f"{tmp}/ess.toml", "--state", f"{tmp}/ess.db",
                                          "--metrics-listen", metrics], tmp, True)
        bare = start_server("bare", [os.path.join(HERE, "bare_server.py")], tmp, False)
        clients: dict[str, GoClient] = {}
        try:
            wait_serving(server, 30)
            wait_serving(bare, 30)
            server.settler = workload.Settler(server.target("uds"))
            server.settle()
            for subject in (server, bare):
                clients[subject.name] = client = GoClient(essbench, subject.target("uds"),
                                                          args.api)
                for n in workload.chunks(2000):  # warm-up
                    client.run(n)
                    subject.settle()
            for r in range(args.rounds):
                for phase in (phases[::-1] if r % 2 else phases):
                    subject = bare if phase.bare else server
                    run_phase(phase, subject, clients[subject.name], args.calls, args,
                              watchers_binary, f"http://{metrics}/metrics")
                    print(f"round {r + 1}: {phase.name} done", file=sys.stderr)
        finally:
            for client in clients.values():
                client.close()
            stop_server(server)
            stop_server(bare)
    rows = [p.summary() for p in phases]
    report(rows, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "args": vars(args)}, f, indent=2)
    return 0


def report(rows: list[dict], args) -> None:
    by = {r["phase"]: r for r in rows}
    print(f"{'phase':<22} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9} {'srv CPU µs/call':>16}"
          f" {'trans/s':>8} {'cmd p99 ms':>10} serving kept-up")
    for r in rows:
        command = f"{r['command_p99_ms']:.1f}" if r["command_p99_ms"] is not None else "-"
        print(f"{r['phase']:<22} {r['p50']:>8.0f} {r['p99']:>8.0f} {r['p99.9']:>9.0f}"
              f" {r['server_cpu_us_per_call']:>16.0f} {r['transitions_per_s']:>8.1f}"
              f" {command:>10} {str(r['serving']):>7} {str(r['kept_up']):>7}")
        for note in r["notes"][:5]:
            print(f"    {note}")
    checks = [("storm p99 / quiet p99", by["storm"]["p99"] / by["quiet"]["p99"], 1.2),
              ("scrape p99 / quiet p99", by["scrape"]["p99"] / by["quiet"]["p99"], 1.1)]
    for name in [f"storm+{n} watchers" for n in args.watchers] + \
            [f"storm+{n} fan-out" for n in (args.watchers if args.fanout else ())]:
        row, n = by[name], int(name.split("+")[1].split()[0])
        if n <= 200:
            checks.append((f"{name} p99 / storm p99", row["p99"] / by["storm"]["p99"], 2.0))
        else:
            checks.append((f"{name}: SERVING and kept up",
                           float(row["serving"] and row["kept_up"]), None))
    print("verdicts:")
    for name, value, limit in checks:
        ok = value >= 1.0 if limit is None else value <= limit
        shown = ("yes" if value else "no") if limit is None else f"{value:.2f} (<= {limit})"
        print(f"  {name}: {shown} -> {'MET' if ok else 'NOT MET'}")
    floor = by["bare storm"]["p99"] / by["bare quiet"]["p99"]
    print(f"floor: a bare grpc.aio server with no-op commands, storm p99 / quiet p99"
          f" {floor:.2f} (the same storm's cost in transport alone)")


if __name__ == "__main__":
    sys.exit(main())
