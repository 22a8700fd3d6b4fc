"""Side-by-side benchmark: the sidecar against bare grpcio servers and OPA's REST API.

    python benchmarks/peers/run.py [--quick] [--out DIR]     # or: make bench-peers

Subjects, each over its Unix socket (every subject can listen on one: grpcio's `unix:`
targets, OPA's `--addr unix://...`), so no subject pays for TCP and the others not:

- bare grpc.aio (benchmarks/bare_server.py) on asyncio and on uvloop (the sidecar's loop),
  and bare synchronous grpcio (benchmarks/peers/bare_sync_server.py), each unary
  CheckOrder and CheckOrderStream: no logic, one prebuilt ALLOWED answer, the sidecar's
  messages; the transport's cost;
- the sidecar (`python -m ess_sidecar serve`, fresh state, the config of
  benchmarks/workload.py plus the limits of policy/data.json), unary and stream: every
  timed order goes through the whole decision path and is ALLOWED;
- OPA 1.22 (`opa run --server`, .tools/bin/opa from benchmarks/peers/install_opa.sh) with
  policy/ess.rego and policy/data.json: POST /v1/data/ess/decision, HTTP/1.1 keep-alive.
  OPA-Envoy's ext_authz gRPC API is not a subject: the Go module proxy refuses the module
  (install_opa.sh asks it and keeps the answer in .tools/opa-envoy.txt; the report quotes
  it).

First the probes (probes.py): every subject decides the probe orders, and the run stops
with exit code 1 before anything is timed if any decision differs from the expected one.

Then, per client (Go: clients/go/cmd/peersbench; Python: this process, grpc.aio and asyncio
streams; peer_clients.py says how each keeps N calls in flight) and per concurrency N in
1, 8, 32, 128: a client per subject is opened (connections and streams kept for the whole
cell), each is warmed up, and then --rounds rounds run one segment of --segment-s seconds
per subject, the subjects' order rotated by one every round and reversed every other
round, so drift on the machine (other work, frequency) spreads over all subjects instead
of landing on one. Per segment: every call's latency (timed in the client around the call
only), calls/s (calls over the segment's wall time), the subject server's CPU (utime +
stime of its process and its children from /proc/<pid>/stat, over the segment) and the
client's. After every sidecar segment, off the clock and outside the CPU window, the
sidecar's working orders are ended (workload.Settler), as check_latency.py does.

Writes DIR/peers.md (machine, method, probes, a table per client, ratios against bare
grpc.aio and bare sync), DIR/peers-cdf.png, DIR/peers-throughput.png and DIR/peers.json
(every figure). Exit code 0 when the run completed; 1 on a probe mismatch, a failed call,
a server that did not start or died, or a build failure. Figures are not judged.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
REPO = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
import check_latency  # noqa: E402 (benchmarks/)
import workload  # noqa: E402
from check_latency import BenchmarkError, Server, Tally  # noqa: E402
from goclient import GoClientError  # noqa: E402

import peer_clients as clients  # noqa: E402 (benchmarks/clients.py is another module)
import probes  # noqa: E402
import report  # noqa: E402

OPA = os.path.join(REPO, ".tools", "bin", "opa")
ENVOY_NOTE = os.path.join(REPO, ".tools", "opa-envoy.txt")
CONCURRENCY = (1, 8, 32, 128)


@dataclass(frozen=True)
class Subject:
    name: str
    server: str  # key into the servers
    api: str  # unary, stream or http


SUBJECTS = (
    Subject("bare aio unary", "bare-aio", "unary"),
    Subject("bare aio stream", "bare-aio", "stream"),
    Subject("bare uvloop unary", "bare-uvloop", "unary"),
    Subject("bare uvloop stream", "bare-uvloop", "stream"),
    Subject("bare sync unary", "bare-sync", "unary"),
    Subject("bare sync stream", "bare-sync", "stream"),
    Subject("sidecar unary", "sidecar", "unary"),
    Subject("sidecar stream", "sidecar", "stream"),
    Subject("OPA REST", "opa", "http"),
)


def start_opa(tmp: str, timeout_s: float) -> Server:
    if not os.access(OPA, os.X_OK):
        raise BenchmarkError(f"{OPA} is missing: run bash benchmarks/peers/install_opa.sh")
    sock, log = f"{tmp}/opa.sock", f"{tmp}/opa.log"
    with open(log, "wb") as out:  # no decision or access logs, no version check
        proc = subprocess.Popen(
            [OPA, "run", "--server", "--addr", f"unix://{sock}", "--log-level", "error",
             "--log-level-request", "error", "--skip-version-check",
             probes.POLICY, probes.DATA],
            cwd=tmp, stdout=out, stderr=subprocess.STDOUT)
    server = Server("opa", proc, "", sock, log)
    deadline = time.monotonic() + timeout_s
    while not (os.path.exists(sock) and probes.Opa(sock).healthy()):
        if proc.poll() is not None or time.monotonic() > deadline:
            check_latency.stop_server(server)
            raise BenchmarkError(f"OPA did not answer /health within {timeout_s:g} s;"
                                 f" its output:\n{server.tail()}")
        time.sleep(0.05)
    return server


def start_servers(tmp: str, args, stack: list[Server]) -> dict[str, Server]:
    data = probes.load_data()
    acc = data["accounts"][workload.ACCOUNT]  # the timed orders' account must be workload's
    if (acc["equity"], acc["marks"], acc["positions"]) != (
            workload.EQUITY, {workload.SYMBOL: workload.MARK},
            [{"strategy": workload.STRATEGY, "symbol": workload.SYMBOL, "quantity": 0}]):
        raise BenchmarkError("policy/data.json's ACC-1 differs from benchmarks/workload.py")
    with open(f"{tmp}/ess.toml", "w") as f:  # caps far above any segment's calls
        f.write(probes.sidecar_config(data, workload.limits(args.working_cap)))
    argvs = {
        "bare-aio": [os.path.join(BENCH, "bare_server.py")],
        "bare-uvloop": [os.path.join(BENCH, "bare_server.py"), "--event-loop", "uvloop"],
        "bare-sync": [os.path.join(HERE, "bare_sync_server.py")],
        "sidecar": ["-m", "ess_sidecar", "serve", "--config", f"{tmp}/ess.toml",
                    "--state", f"{tmp}/ess.db"],
    }
    servers = {}
    for name, argv in argvs.items():
        servers[name] = check_latency.start_server(name, argv, tmp, name == "sidecar")
        stack.append(servers[name])
    for server in servers.values():
        check_latency.wait_serving(server, args.start_timeout)
    servers["opa"] = start_opa(tmp, args.start_timeout)
    stack.append(servers["opa"])
    sidecar = servers["sidecar"]
    with grpc.insecure_channel(sidecar.target("uds")) as channel:
        probes.prepare_sidecar(probes.pb_grpc.GuardServiceStub(channel), data)
    sidecar.settler = workload.Settler(sidecar.target("uds"))
    return servers


def check_alive(servers: dict[str, Server]) -> None:
    for server in servers.values():
        if server.proc.poll() is not None:
            raise BenchmarkError(f"{server.name} exited with {server.proc.returncode}")


def measure(kind: str, n: int, servers: dict[str, Server], make_client, args,
            latencies: dict) -> list[dict]:
    """One cell: every subject with client `kind` at concurrency n, rounds interleaved."""
    opened, tallies, client_cpu = {}, {s.name: Tally() for s in SUBJECTS}, {}
    try:
        for s in SUBJECTS:
            server = servers[s.server]
            target = server.target("uds")
            opened[s.name] = make_client(s.api, target, n)
        for s in SUBJECTS:  # warm-up: connections, streams, the servers' caches
            opened[s.name].run(args.warmup_s)
            servers[s.server].settle()
        for r in range(args.rounds):
            turn = r % len(SUBJECTS)
            order = SUBJECTS[turn:] + SUBJECTS[:turn]
            for s in (order[::-1] if r % 2 else order):
                server, tally = servers[s.server], tallies[s.name]
                cpu = server.cpu_seconds()
                lat, wall, ccpu = opened[s.name].run(args.segment_s)
                tally.cpu_s += server.cpu_seconds() - cpu
                tally.latencies += lat
                tally.wall_ns += wall
                client_cpu[s.name] = client_cpu.get(s.name, 0) + ccpu
                server.settle()  # the sidecar's working orders ended, off the clock
            check_alive(servers)
    finally:
        for client in opened.values():
            client.close()
    rows = []
    for s in SUBJECTS:
        tally = tallies[s.name]
        if not tally.latencies:
            raise BenchmarkError(f"{s.name}: no call completed at concurrency {n}")
        latencies[(kind, n, s.name)] = tally.latencies
        summary = tally.summary()
        rows.append({"client": kind, "concurrency": n, "subject": s.name, "server": s.server,
                     "api": s.api, "transport": "uds", **summary,
                     "client_cpu_us_per_call": client_cpu[s.name] / 1000 / summary["calls"]})
        print(f"  {kind:<6} N={n:<3} {s.name:<17} p50 {summary['p50']:>8.0f} µs"
              f"  p99 {summary['p99']:>8.0f} µs  {summary['calls_per_s']:>7.0f} calls/s"
              f"  srv CPU {summary['server_cpu_us_per_call']:>5.0f} µs/call", flush=True)
    return rows


def check_probes(servers: dict[str, Server]) -> list[dict]:
    print("probes: every subject, every probe order ...", flush=True)
    probe_rows = probes.check(servers["sidecar"].target("uds"),
                              {"bare aio": servers["bare-aio"].target("uds"),
                               "bare uvloop": servers["bare-uvloop"].target("uds"),
                               "bare sync": servers["bare-sync"].target("uds")},
                              servers["opa"].uds, probes.load_data())
    print(f"probes: {len(probe_rows)} orders, every subject agrees", flush=True)
    return probe_rows


def run(args, tmp: str, machine: dict) -> dict:
    go_binary, machine["go_client"] = clients.build_go()
    stack: list[Server] = []
    rows, latencies = [], {}
    try:
        servers = start_servers(tmp, args, stack)
        probe_rows = check_probes(servers)
        servers["sidecar"].settle()
        loop = asyncio.new_event_loop()
        try:
            makers = {"go": lambda api, target, n: clients.GoClient(go_binary, api, target, n),
                      "python": lambda api, target, n: clients.PyClient(loop, api, target, n)}
            for kind in args.clients:
                for n in args.concurrency:
                    rows += measure(kind, n, servers, makers[kind], args, latencies)
        finally:
            loop.close()
        memory = {name: report.memory(s.proc.pid) for name, s in servers.items()}
    finally:
        for server in stack:
            check_latency.stop_server(server)
    timed = {"account": workload.ACCOUNT, "strategy": workload.STRATEGY,
             "symbol": workload.SYMBOL, "side": "BUY", "quantity": 1.0,
             "price": workload.price(1), "client_order_id": "bench-1"}
    return {"rows": rows, "latencies": latencies, "probes": probe_rows, "memory": memory,
            "opa_bench": report.opa_bench(OPA, probes.POLICY, probes.DATA, timed)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds per cell")
    parser.add_argument("--segment-s", type=float, default=0.75,
                        help="seconds per subject per round")
    parser.add_argument("--warmup-s", type=float, default=0.5,
                        help="unmeasured seconds per subject per cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--clients", nargs="+", choices=("go", "python"),
                        default=["go", "python"])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run, under a minute: 2 rounds of 0.15 s, 0.1 s warm-up")
    parser.add_argument("--out", default=os.path.join(BENCH, "results"),
                        help="where peers.md, the PNGs and peers.json go")
    parser.add_argument("--working-cap", type=int, default=200_000,
                        help="the sidecar's working-order caps (more than a segment's calls)")
    parser.add_argument("--start-timeout", type=float, default=30.0)
    parser.add_argument("--probes-only", action="store_true",
                        help="start every subject, check the probes, time nothing, write"
                             " nothing (tests/e2e/test_peer_probes.py)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.segment_s, args.warmup_s = 2, 0.15, 0.1
    if args.rounds < 1 or args.segment_s <= 0 or min(args.concurrency) < 1:
        parser.error("need --rounds >= 1, --segment-s > 0, concurrency >= 1")
    return args


def mismatch(error: probes.ProbeMismatch, then: str) -> int:
    if len(error.args) > 1:  # every probe's decisions, for the diagnosis
        print("\n".join(report.probe_table(error.args[1])), file=sys.stderr)
    print(f"error: probe mismatch{then}: {error.args[0]}", file=sys.stderr)
    return 1


def probes_only(args: argparse.Namespace) -> int:
    """Whether every subject still decides the probes as expected (the policy and the
    sidecar's config kept equivalent to the sidecar as it is): 0, else 1 saying why."""
    stack: list[Server] = []
    try:
        with tempfile.TemporaryDirectory(prefix="ess-probes-") as tmp:
            try:
                check_probes(start_servers(tmp, args, stack))
            finally:
                for server in stack:
                    check_latency.stop_server(server)
    except probes.ProbeMismatch as error:
        return mismatch(error, "")
    except (BenchmarkError, grpc.RpcError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.probes_only:
        return probes_only(args)
    started = time.monotonic()
    machine = report.machine(OPA, ENVOY_NOTE)
    machine["started"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"benchmarks/peers: {machine['cpu']} ×{machine['nproc']}, load"
          f" {machine['load_start']}; {len(SUBJECTS)} subjects × {args.clients} ×"
          f" N={args.concurrency}, {args.rounds} rounds of {args.segment_s:g} s", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="ess-peers-") as tmp:
            result = run(args, tmp, machine)
    except probes.ProbeMismatch as error:
        return mismatch(error, ", nothing timed")
    except (BenchmarkError, GoClientError, clients.ClientError, grpc.RpcError, OSError,
            ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    machine["load_end"] = report.load()
    machine["duration_s"] = time.monotonic() - started
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    paths = report.write(args.out, args, argv_text, machine, result, SUBJECTS)
    print(f"done in {machine['duration_s']:.0f} s; wrote {', '.join(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
