"""CheckOrder / CheckOrderStream latency of the sidecar against a bare grpcio server, same run.

Method. Two servers run as subprocesses: benchmarks/bare_server.py (same messages, no logic)
and `python -m ess_sidecar serve` with a config under which every order is ALLOWED through the
full decision path (state gate, size, price band against a synced mark, exposure, working-order
caps, duplicates; only the rate limit off). Each is ready when grpc.health.v1 answers SERVING
for ess.v1.GuardService on both of its targets. This process is the client, the same code for
both servers, one call in flight, timed with perf_counter_ns around the call only. Every order
has its own client_order_id and the sidecar's working orders are ended by a SyncPositions
between segments, off the timed path (benchmarks/workload.py says why and how). Per
(transport, API): warm-up on both, then --rounds short segments per server in the order
A B, B A, A B, ... (ABBA), so drift on a shared 2-core machine (frequency,
neighbours, bursts lasting a second or two) cancels instead of landing on one server: with 4
long segments, two identical bare servers differed by up to 20 % at the stream p50; with 40
segments of 500 calls, by about 5 %, which is the noise floor to read ratios against.
Server CPU per call is the utime+stime delta of the server process (/proc/<pid>/stat, all its
threads) and its child processes over the measured segments. The client's GC is paused
during a segment so its pauses do not land in the tails of one server by chance.

Client API, chosen by measuring against the bare server on this machine (10 000 calls, UDS):
unary with the sync channel (p50 ~550 µs, client CPU ~220 µs/call) beat grpc.aio (~610 µs,
~275 µs); for the stream, grpc.aio write/read on one call (~290 µs, ~195 µs) beat a sync
stream fed from a queue (~340 µs, ~245 µs), whose request iterator runs on another thread.
Even so the Python client costs about as much CPU per call as the server, so --client go runs
the measured calls from a Go program instead (benchmarks/goclient.py), everything else unchanged.

With --compare-telemetry the baseline is not the bare server but the sidecar itself with
telemetry off, and the subject has telemetry on as shipped (default sampling, a Prometheus
endpoint): the ratio is what OpenTelemetry costs.

With --auth the sidecar has authentication on (a tokens file) and every call of the client,
to both servers, carries a bearer token: the cost of checking it is what the ratio shows.

The sidecar serves on uvloop, as shipped (`server.event_loop`); the bare server on asyncio,
as a bare grpc.aio server does. `--bare-loop uvloop` puts the bare server on uvloop too: the
ratio is then the sidecar's own work against the fastest bare grpc.aio server, with what
uvloop saves counted on both sides. `--sidecar-loop asyncio` runs the sidecar as it was
before uvloop.

    python benchmarks/check_latency.py [--quick] [--json FILE] [--compare-bare] [--client go]
                                       [--auth] [--compare-telemetry]
                                       [--bare-loop asyncio|uvloop] [--sidecar-loop ...]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from ess.v1 import guard_pb2, guard_pb2_grpc
from ess_sidecar.adapters.auth.tokens import new_token, tokens_file_line  # noqa: E402
from ess_sidecar.domain.access import Role  # noqa: E402
import workload  # noqa: E402 (benchmarks/)
from goclient import GoClient, GoClientError, build as build_go_client  # noqa: E402 (benchmarks/)

SERVICE = "ess.v1.GuardService"
COMBINATIONS = (("unary", "tcp"), ("unary", "uds"), ("stream", "tcp"), ("stream", "uds"))
# docs/design.md, "Performance budgets": (api, transport or None for both, figure, op, limit).
BUDGETS = (("unary", None, "p50 ratio", "<=", 1.10), ("unary", None, "p99", "<", 1000),
           ("stream", None, "p50 ratio", "<=", 1.15), ("stream", "uds", "p50", "<", 200),
           ("stream", "uds", "p99", "<", 500), ("stream", "uds", "p99.9", "<", 1000))
# The issue "Observability": telemetry on (default sampling) costs at most 5 % of the p50.
TELEMETRY_BUDGETS = (("unary", None, "p50 ratio", "<=", 1.05),
                     ("stream", None, "p50 ratio", "<=", 1.05))


class BenchmarkError(Exception):
    """A server did not start, or an answer was not the expected ALLOWED decision."""


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    tcp: str
    uds: str
    log: str
    sidecar: bool = False  # a sidecar (settled between segments), not a bare server
    settler: workload.Settler | None = None

    def settle(self) -> None:
        """End the sidecar's working orders (and sync its mark): off the timed path."""
        if self.settler is not None:
            self.settler()

    def target(self, transport: str) -> str:
        return self.tcp if transport == "tcp" else f"unix:{self.uds}"

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def tail(self, lines: int = 40) -> str:
        with open(self.log, errors="replace") as f:
            return "".join(f.readlines()[-lines:])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a server, all its threads, and of its child processes (the
    sidecar's journal syncer): what serving costs the machine."""
    return sum(map(_own_cpu_seconds, and_children(pid)))


def _own_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the command name may hold spaces
    except FileNotFoundError:
        return 0.0  # a child that ended meanwhile
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def and_children(pid: int) -> list[int]:
    """`pid` and its children, from /proc/<pid>/task/<tid>/children."""
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children += [int(child) for child in f.read().split()]
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return [pid, *children]


def free_port() -> int:
    with socket.socket() as s:  # a free port; the tiny race with other binders is acceptable
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(name: str, argv: list[str], tmp: str, sidecar: bool) -> Server:
    tcp = f"127.0.0.1:{free_port()}"
    uds, log = f"{tmp}/{name}.sock", f"{tmp}/{name}.log"
    # ESS_* overrides would make the run depend on the caller's shell; the file decides.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESS_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, *argv, "--listen", tcp, "--uds", uds],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server(name, proc, tcp, uds, log, sidecar)


def wait_serving(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for transport in ("tcp", "uds"):
        with grpc.insecure_channel(server.target(transport)) as channel:
            check = health_pb2_grpc.HealthStub(channel).Check
            while not _is_serving(check, deadline):
                if server.proc.poll() is not None:  # stop_server prints its output
                    raise BenchmarkError(f"{server.name} exited with {server.proc.returncode}"
                                         " before serving")
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"{server.name} not SERVING on {transport} within"
                                         f" {timeout_s:g} s; its output:\n{server.tail()}")
                time.sleep(0.05)  # poll interval: a refused connection fails at once


def _is_serving(check, deadline: float) -> bool:
    try:
        reply = check(health_pb2.HealthCheckRequest(service=SERVICE),
                      timeout=max(0.05, min(1.0, deadline - time.monotonic())))
    except grpc.RpcError:
        return False  # not listening yet, or health not registered yet
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def stop_server(server: Server) -> None:
    if server.settler is not None:
        server.settler.close()
    if server.proc.poll() is not None:  # it died on its own: its output is the diagnosis
        print(f"{server.name} exited with {server.proc.returncode}; its output:\n"
              f"{server.tail()}", file=sys.stderr)
        return
    server.proc.terminate()  # SIGTERM: the servers' graceful shutdown path
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


class UnaryClient:
    """Sync channel, one blocking CheckOrder at a time, each order made before the timer."""

    def __init__(self, target: str, metadata: tuple = ()) -> None:
        self._channel = grpc.insecure_channel(target)
        self._call = functools.partial(
            guard_pb2_grpc.GuardServiceStub(self._channel).CheckOrder, metadata=metadata or None)
        self._orders = workload.Orders()

    def run(self, n: int) -> list[int]:
        call, clock, latencies = self._call, time.perf_counter_ns, [0] * n
        next_order = self._orders.next
        for i in range(n):
            order = next_order()
            start = clock()
            reply = call(order)
            latencies[i] = clock() - start
            if not reply.allowed:
                raise BenchmarkError(f"CheckOrder denied: {reply}")
        return latencies

    def close(self) -> None:
        self._channel.close()


class StreamClient:
    """One long-lived grpc.aio CheckOrderStream, one request in flight, ids incrementing."""

    def __init__(self, target: str, metadata: tuple = ()) -> None:
        self._loop, self._last_id = asyncio.get_event_loop(), 0  # the loop run() installed
        self._channel = grpc.aio.insecure_channel(target)
        self._call = guard_pb2_grpc.GuardServiceStub(self._channel).CheckOrderStream(
            metadata=metadata or None)
        self._orders = workload.Orders()

    def run(self, n: int) -> list[int]:
        return self._loop.run_until_complete(self._run(n))

    async def _run(self, n: int) -> list[int]:
        call, clock, latencies = self._call, time.perf_counter_ns, [0] * n
        next_order = self._orders.next
        for i in range(n):
            self._last_id += 1
            request = guard_pb2.CheckOrderStreamRequest(request_id=self._last_id,
                                                        order=next_order())
            start = clock()
            await call.write(request)
            reply = await call.read()
            latencies[i] = clock() - start
            if reply is grpc.aio.EOF or reply.request_id != self._last_id \
                    or not reply.decision.allowed:
                raise BenchmarkError(f"stream answer for {self._last_id} was {reply}")
        return latencies

    def close(self) -> None:
        self._loop.run_until_complete(self._close())

    async def _close(self) -> None:
        await self._call.done_writing()
        await self._call.code()  # let the call finish, so no task outlives the loop
        await self._channel.close()


@dataclass
class Tally:
    latencies: list[int] = field(default_factory=list)
    wall_ns: int = 0
    cpu_s: float = 0.0

    def add(self, client, server: Server, n: int) -> None:
        gc.collect()
        gc.disable()
        try:
            cpu, start = server.cpu_seconds(), time.perf_counter_ns()
            self.latencies += client.run(n)
            self.wall_ns += time.perf_counter_ns() - start
            self.cpu_s += server.cpu_seconds() - cpu
        finally:
            gc.enable()

    def summary(self) -> dict:
        ordered, n = sorted(self.latencies), len(self.latencies)
        pct = {name: ordered[max(0, math.ceil(q * n) - 1)] / 1000  # nearest rank, in µs
               for name, q in (("p50", 0.50), ("p99", 0.99), ("p99.9", 0.999))}
        return {"calls": n, **pct, "calls_per_s": n / (self.wall_ns / 1e9),
                "server_cpu_us_per_call": self.cpu_s * 1e6 / n}


def measure(api: str, transport: str, servers: list[Server], make_client, args) -> list[dict]:
    clients = [make_client(s.target(transport)) for s in servers]
    tallies = [Tally() for _ in servers]
    try:
        for server, client in zip(servers, clients):
            for n in workload.chunks(args.warmup):
                client.run(n)
                server.settle()
        for r in range(args.rounds):
            n = segment(args, r)
            order = list(zip(servers, clients, tallies))
            for server, client, tally in (order[::-1] if r % 2 else order):
                tally.add(client, server, n)
                server.settle()  # outside the timed calls and the server-CPU window
    finally:
        for client in clients:
            client.close()
    return [{"transport": transport, "api": api, "server": s.name, **t.summary()}
            for s, t in zip(servers, tallies)]


def segment(args, r: int) -> int:
    """The calls of round r (the rounds share --calls as evenly as they can)."""
    return args.calls * (r + 1) // args.rounds - args.calls * r // args.rounds


def verdicts(rows: list[dict], names: tuple[str, str], budgets: tuple = BUDGETS) -> list[dict]:
    out = []
    for api, transport in COMBINATIONS:
        base, subject = (next(r for r in rows if (r["api"], r["transport"], r["server"])
                              == (api, transport, name)) for name in names)
        figures = {**subject, "p50 ratio": subject["p50"] / base["p50"]}
        checks = [{"figure": figure, "value": figures[figure], "op": op, "limit": limit,
                   "ok": figures[figure] <= limit if op == "<=" else figures[figure] < limit,
                   "baseline": base.get(figure)}
                  for b_api, b_transport, figure, op, limit in budgets
                  if b_api == api and b_transport in (None, transport)]
        out.append({"api": api, "transport": transport, "p50_ratio": figures["p50 ratio"],
                    "checks": checks})
    return out


def print_report(rows: list[dict], results: list[dict], names: tuple[str, str]) -> None:
    print(f"{'transport':<9} {'API':<7} {'server':<13} {'p50 µs':>8} {'p99 µs':>8}"
          f" {'p99.9 µs':>9} {'calls/s':>8} {'srv CPU µs/call':>16}")
    for r in rows:
        print(f"{r['transport']:<9} {r['api']:<7} {r['server']:<13} {r['p50']:>8.0f}"
              f" {r['p99']:>8.0f} {r['p99.9']:>9.0f} {r['calls_per_s']:>8.0f}"
              f" {r['server_cpu_us_per_call']:>16.0f}")
    print(f"\n{'transport':<9} {'API':<7} {names[1]}/{names[0]} p50   budgets ({names[1]})")
    for v in results:
        checks = "   ".join(_format_check(c) for c in v["checks"])
        print(f"{v['transport']:<9} {v['api']:<7} {v['p50_ratio']:>16.2f}   {checks}")


def _format_check(check: dict) -> str:
    verdict = "OK" if check["ok"] else "OVER"
    if check["figure"] == "p50 ratio":
        return f"ratio {check['value']:.2f} {check['op']} {check['limit']:.2f} {verdict}"
    return (f"{check['figure']} {check['value']:.0f} {check['op']} {check['limit']:g} µs"
            f" {verdict} (bare {check['baseline']:.0f})")


def run(args, tmp: str) -> dict:
    bare = [os.path.join(REPO, "benchmarks", "bare_server.py"), "--event-loop", args.bare_loop]
    names = ("bare", "bare2") if args.compare_bare else ("bare", "sidecar")
    sidecars = (False, not args.compare_bare)
    config = workload.config(max(segment(args, r) for r in range(args.rounds))) \
        + f'[server]\nevent_loop = "{args.sidecar_loop}"\n'
    with open(f"{tmp}/ess.toml", "w") as f:
        f.write(config)
    subject = bare if args.compare_bare else ["-m", "ess_sidecar", "serve", "--config",
                                              f"{tmp}/ess.toml", "--state", f"{tmp}/ess.db"]
    if args.compare_telemetry:  # the same sidecar with telemetry off is the baseline
        names = ("telemetry-off", "telemetry-on")
        sidecars = (True, True)
        with open(f"{tmp}/off.toml", "w") as f:
            f.write(config + "[telemetry]\nenabled = false\n")
        bare = ["-m", "ess_sidecar", "serve", "--config", f"{tmp}/off.toml", "--state",
                f"{tmp}/off.db"]
        subject = subject + ["--metrics-listen", f"127.0.0.1:{free_port()}"]
    metadata: tuple = ()
    if args.auth:
        token = new_token()
        with open(f"{tmp}/tokens.toml", "w") as f:
            f.write(f"[tokens]\n{tokens_file_line('bench', Role.EXECUTOR, token)}\n")
        subject += ["--tokens-file", f"{tmp}/tokens.toml"]
        metadata = (("authorization", f"Bearer {token}"),)
    servers, rows = [], []
    if args.client == "go":  # built before any server starts, so a build failure costs nothing
        go_binary, go_version = build_go_client(tmp)
        print(f"client: Go ({go_version}), clients/go/cmd/essbench")
    try:
        servers.append(start_server(names[0], bare, tmp, sidecars[0]))
        servers.append(start_server(names[1], subject, tmp, sidecars[1]))
        for server in servers:
            wait_serving(server, args.start_timeout)
            if server.sidecar:
                server.settler = workload.Settler(server.target("uds"), metadata)
                server.settle()  # equity and the mark, before any order
        asyncio.set_event_loop(loop := asyncio.new_event_loop())  # for the stream clients
        for api, transport in COMBINATIONS:
            client = functools.partial(UnaryClient if api == "unary" else StreamClient,
                                       metadata=metadata)
            if args.client == "go":
                client = functools.partial(GoClient, go_binary, api=api)  # client(target)
            rows += measure(api, transport, servers, client, args)
        loop.close()
    finally:
        for server in servers:
            stop_server(server)
    budgets = TELEMETRY_BUDGETS if args.compare_telemetry else BUDGETS
    return {"rows": rows, "verdicts": verdicts(rows, names, budgets), "names": names}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="measured calls per server")
    parser.add_argument("--warmup", type=int, default=2000, help="unmeasured calls first")
    parser.add_argument("--rounds", type=int, default=40, help="ABBA segments per server")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 500 calls, 100 warm-up, 10 rounds")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--compare-bare", action="store_true",
                        help="a second bare server instead of the sidecar (ratio should be ~1)")
    parser.add_argument("--start-timeout", type=float, default=30.0, help="seconds to SERVING")
    parser.add_argument("--client", choices=("python", "go"), default="python",
                        help="who makes the measured calls: this process, or a Go program")
    parser.add_argument("--compare-telemetry", action="store_true",
                        help="the sidecar with telemetry on (default sampling, Prometheus"
                        " endpoint) against itself with telemetry off, instead of bare")
    parser.add_argument("--auth", action="store_true",
                        help="authentication on in the sidecar; every call carries a token")
    parser.add_argument("--bare-loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="the bare server's event loop (a bare grpc.aio server's is"
                        " asyncio; on uvloop it is the fastest bare grpc.aio server)")
    parser.add_argument("--sidecar-loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="the sidecar's server.event_loop (shipped: uvloop)")
    args = parser.parse_args(argv)
    if args.auth and args.client == "go":
        parser.error("--auth is measured with the Python client only")
    if args.quick:
        args.calls, args.warmup, args.rounds = 500, 100, 10
    if not 1 <= args.rounds <= args.calls:
        parser.error("need 1 <= --rounds <= --calls")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"python {platform.python_version()}, grpcio {grpc.__version__}, {os.cpu_count()} CPUs,"
          f" load {os.getloadavg()[0]:.2f}; {args.calls} calls after {args.warmup} warm-up,"
          f" {args.rounds} rounds ABBA, one call in flight, {args.client} client"
          + (", authentication on (bearer token)" if args.auth else ""))
    try:
        with tempfile.TemporaryDirectory(prefix="ess-bench-") as tmp:
            report = run(args, tmp)
    except (BenchmarkError, GoClientError, grpc.RpcError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print_report(report["rows"], report["verdicts"], report["names"])
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (other work here adds noise)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), **report}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
