"""A flood of distinct ids: the sidecar's memory, one /metrics scrape after it, and CheckOrder's
p99 while /metrics is scraped every second.

The issue "Bounded memory, scrapes that never stall": 1,000,000 distinct ids must keep the
sidecar's RSS under a documented bound, and CheckOrder's p99 while /metrics is scraped every
second must stay within 1.1x of its p99 without scraping. (Before it, 200,000 ids took RSS
from 61 to 403 MiB with no plateau; one scrape after them took about 8 s and stalled a
CheckOrder for 1.08 s.)

Method. A real sidecar subprocess (`python -m ess_sidecar serve`, Unix socket, fresh SQLite
state, telemetry on with a Prometheus endpoint on a free port), with the shipped limits but
for these, so that the flood is allowed rather than denied:

- `exposure_enabled = false`: a new account has no equity, and would be denied
  EQUITY_UNKNOWN before reserving anything;
- `max_orders_per_second` raised to 1,000,000 rather than turned off, so the per-strategy
  rate windows are still kept (every flood strategy sends one order);
- `order_id_retention_s = 10`: a day of order ids is a bound of its own
  (`max_remembered_orders`, 1,000,000, full at the end of a default flood, after which every
  order is DUPLICATE_ORDER); a short retention keeps the flood about the per-id structures.

`duplicate_identical_orders` stays as shipped: no two flood orders are identical, and its
counts are kept per (account, strategy, ...) too.

1. Flood: --ids ids, `F<n>`, each used in every kind of per-id structure, sent over the
   Unix socket by FLOOD_WORKERS coroutines on one grpc.aio channel (one call in flight each).
   For id n, by n % 3:
   0. ReportMetric(STRATEGY:F<n>, API_ERROR 1); an order of strategy F<n> in a shared account;
   1. ReportMetric(ACCOUNT:F<n>, DAILY_DRAWDOWN_PCT 1); an order of account F<n>, strategy F<n>;
   2. ReportMetric(SYMBOL:F<n>, TRADE_RESULT -1); an order of account F<n>, strategy F<n>,
      symbol F<n>.
   Every sample is below its breaker's threshold, so no breaker trips. Each order goes
   through the worker's CheckOrderStream, with a fresh client_order_id, and once allowed is
   ended by ReportOrderUpdate(CANCELLED), so working orders do not pile up. A sample refused
   RESOURCE_EXHAUSTED (`limits.max_scopes_with_evidence` reached: the sample is refused and
   GLOBAL trips, so every later order is denied SCOPE_TRIPPED) is counted, as are denials,
   and the flood goes on. After every tenth of the flood the sidecar's RSS (VmRSS,
   /proc/<pid>/status) is read once it stops falling (polled every SETTLE_POLL_S; at most
   SETTLE_MAX_S, time for its timers to forget idle ids), with the sidecar's CPU per id
   (utime + stime) over that tenth, so the curve shows a plateau or its absence. Peak is
   VmHWM.
2. One GET /metrics after the flood (urllib): its time, size and lines (and, for reference,
   one at start).
3. If the flood left GLOBAL tripped, a forced Reset (printed), so that what follows measures
   allowed orders. Latency: unary CheckOrder, a sync channel, one call in flight, timed with
   perf_counter_ns around the call only (benchmarks/workload.py's orders, one account and
   strategy, settled by a SyncPositions between rounds, off the timed path). After a
   warm-up, --checks calls in --rounds rounds, ABBA: quiet, scraping, scraping, quiet, ...
   In a scraping round another process (so it takes nothing from this one's GIL) fetches
   /metrics at once and then every second; a scrape still running at the end of its round
   is waited for before the next round starts. The client's GC is paused during a round.

Budgets are reported, not asserted: the exit code is 0 whenever the run completed.

    python benchmarks/id_flood.py [--ids 1000000] [--checks 20000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import math
import multiprocessing
import multiprocessing.synchronize
import os
import platform
import queue
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc
from ess_sidecar.domain.limits import LimitSettings
from ess_sidecar.testing import SidecarProcess, free_port
import workload  # benchmarks/
from check_latency import cpu_seconds  # benchmarks/

FLOOD_WORKERS = 8  # coroutines, one call in flight each
SAMPLES = 10  # RSS read after every tenth of the flood
SETTLE_POLL_S, SETTLE_MAX_S = 0.25, 2.0
SCRAPE_INTERVAL_S = 1.0
SCRAPE_TIMEOUT_S = 300.0  # the one scrape after the flood took ~8 s before the fix
WARMUP = 500
CALL_TIMEOUT_S = 30.0
P99_RATIO_BUDGET = 1.1
SHARED_ACCOUNT, FLOOD_SYMBOL = "FLOOD", "BTC-USD"
GLOBAL = pb.Scope(kind=pb.SCOPE_KIND_GLOBAL)
# (scope kind, metric, value) of id n's ReportMetric, by n % 3; each below its threshold.
FLOOD_METRICS = ((pb.SCOPE_KIND_STRATEGY, pb.METRIC_API_ERROR, 1.0),
                 (pb.SCOPE_KIND_ACCOUNT, pb.METRIC_DAILY_DRAWDOWN_PCT, 1.0),
                 (pb.SCOPE_KIND_SYMBOL, pb.METRIC_TRADE_RESULT, -1.0))
_SHIPPED = LimitSettings()


class BenchmarkError(Exception):
    """The sidecar died, or answered something the flood cannot go on from."""


def config(metrics_listen: str, longest_round: int) -> str:
    """The sidecar's TOML: shipped limits but for the ones the module docstring names; the
    working-order caps are raised only if a latency round is longer than them."""
    per_account = max(longest_round, _SHIPPED.max_working_orders_per_account)
    per_strategy = max(longest_round, _SHIPPED.max_working_orders_per_strategy)
    return ("[limits]\nexposure_enabled = false\nmax_orders_per_second = 1000000\n"
            f"order_id_retention_s = 10\nmax_working_orders_per_account = {per_account}\n"
            f"max_working_orders_per_strategy = {per_strategy}\n"
            f'[telemetry]\nenabled = true\nmetrics_listen = "{metrics_listen}"\n')


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MiB."""
    figures: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                figures[name] = int(value.split()[0]) / 1024  # kB
    return figures


def alive(sidecar: SidecarProcess) -> int:
    """The sidecar's pid; BenchmarkError if it has exited (stop() prints its output)."""
    process = sidecar.process
    assert process is not None
    if process.poll() is not None:
        raise BenchmarkError(f"the sidecar exited with {process.returncode}")
    return process.pid


def tail(sidecar: SidecarProcess, lines: int = 40) -> str:
    """The last lines of the sidecar's output."""
    return "".join(sidecar.output().splitlines(keepends=True)[-lines:])


# --- 1. the flood ------------------------------------------------------------------------


@dataclass
class FloodTally:
    decisions: collections.Counter[str] = field(default_factory=collections.Counter)
    refused: int = 0  # ReportMetric samples refused RESOURCE_EXHAUSTED (a cap on evidence)
    rss_mib: float = 0.0  # at the last sample: after the whole flood

    def denied(self) -> int:
        return self.decisions.total() - self.decisions["DECISION_REASON_ALLOWED"]


def flood_order(n: int) -> pb.CheckOrderRequest:
    """Id n's order: see the module docstring."""
    name = f"F{n}"
    return pb.CheckOrderRequest(
        account=SHARED_ACCOUNT if n % 3 == 0 else name, strategy=name,
        symbol=name if n % 3 == 2 else FLOOD_SYMBOL, side=pb.SIDE_BUY, quantity=1.0,
        price=100.0, client_order_id=f"o-{n}")


async def flood_worker(stub: pb_grpc.GuardServiceStub, ids: Iterator[int],
                       tally: FloodTally) -> None:
    """Takes ids from the shared iterator until it is exhausted: each id once."""
    stream = stub.CheckOrderStream()
    request_id = 0
    for n in ids:
        kind, metric, value = FLOOD_METRICS[n % 3]
        try:
            await stub.ReportMetric(pb.ReportMetricRequest(
                scope=pb.Scope(kind=kind, id=f"F{n}"), metric=metric, value=value),
                timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:  # a cap is an answer
                raise
            tally.refused += 1
        request_id += 1
        order = flood_order(n)
        await stream.write(pb.CheckOrderStreamRequest(request_id=request_id, order=order))
        reply = await stream.read()
        if reply is grpc.aio.EOF or reply.request_id != request_id \
                or not reply.HasField("decision"):
            raise BenchmarkError(f"stream answer for id {n} was {reply}")
        decision = reply.decision
        tally.decisions[pb.DecisionReason.Name(decision.reason)] += 1
        if decision.allowed:
            ended = await stub.ReportOrderUpdate(pb.ReportOrderUpdateRequest(
                account=order.account, client_order_id=order.client_order_id,
                status=pb.ORDER_STATUS_CANCELLED), timeout=CALL_TIMEOUT_S)
            if not ended.known:
                raise BenchmarkError(f"the allowed order of id {n} was not working")
    await stream.done_writing()
    await stream.code()


async def settled_rss(pid: int) -> tuple[float, float]:
    """RSS once a reading is no lower than the one before (the timers have had their go),
    or after SETTLE_MAX_S; and the seconds waited."""
    start = time.monotonic()
    last = memory_mib(pid)["VmRSS"]
    while time.monotonic() - start < SETTLE_MAX_S:
        await asyncio.sleep(SETTLE_POLL_S)
        rss = memory_mib(pid)["VmRSS"]
        if rss >= last:
            return rss, time.monotonic() - start
        last = rss
    return last, time.monotonic() - start


async def flood(sidecar: SidecarProcess, ids: int, tally: FloodTally) -> None:
    async with grpc.aio.insecure_channel(sidecar.uds_target) as channel:
        stub = pb_grpc.GuardServiceStub(channel)
        sent, pid = 0, alive(sidecar)
        for k in range(1, SAMPLES + 1):
            until = ids * k // SAMPLES
            shared = iter(range(sent, until))
            started, cpu = time.perf_counter(), cpu_seconds(pid)
            await asyncio.gather(*(flood_worker(stub, shared, tally)
                                   for _ in range(FLOOD_WORKERS)))
            rate = (until - sent) / (time.perf_counter() - started)
            cpu_us = (cpu_seconds(pid) - cpu) * 1e6 / (until - sent)
            sent = until
            rss, waited = await settled_rss(alive(sidecar))
            tally.rss_mib = rss
            print(f"{sent:>10,} {rss:>9.1f} {rate:>8.0f} {cpu_us:>15.0f}"
                  f" {tally.refused:>15,} {tally.denied():>14,} {waited:>9.2f}", flush=True)


# --- 2. one scrape -------------------------------------------------------------------------


def scrape(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
        return response.read()


def timed_scrape(url: str) -> str:
    """One GET /metrics: its time, size and lines, as printed."""
    started = time.perf_counter()
    body = scrape(url)
    seconds, lines = time.perf_counter() - started, body.count(b"\n")
    return f"{seconds:.3f} s, {len(body):,} bytes, {lines:,} lines"


# --- 3. latency with and without scraping -----------------------------------------------


def rearm_global(target: str) -> str | None:
    """If the flood left GLOBAL restricted (a cap refused a sample and failed closed), a
    forced Reset, as an operator would, so that the latency rounds measure allowed orders;
    GLOBAL's state and reason before it, or None if it was ARMED."""
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GuardServiceStub(channel)
        state = stub.GetState(pb.GetStateRequest(), timeout=CALL_TIMEOUT_S)
        restricted = [s for s in state.scopes if s.scope.kind == pb.SCOPE_KIND_GLOBAL]
        if not restricted:
            return None
        reply = stub.Reset(pb.ResetRequest(scope=GLOBAL, reason="id_flood: latency rounds",
                                           force=True), timeout=CALL_TIMEOUT_S)
        if reply.state != pb.STATE_ARMED:
            raise BenchmarkError(f"GLOBAL is {pb.State.Name(reply.state)} after a forced reset")
        return f"{pb.State.Name(restricted[0].state)} ({restricted[0].reason})"


def scraper(url: str, on: multiprocessing.synchronize.Event,
            busy: multiprocessing.synchronize.Lock, done: multiprocessing.synchronize.Event,
            durations: multiprocessing.Queue) -> None:
    """A separate process: while `on`, GET /metrics at once and then every
    SCRAPE_INTERVAL_S, putting each scrape's seconds (None if it failed) on `durations`;
    `busy` is held during a scrape, so whoever turns it off can wait for the last one."""
    while not done.is_set():
        if not on.wait(0.05):
            continue
        with busy:
            if not on.is_set():  # turned off while waiting for the lock
                continue
            started = time.perf_counter()
            try:
                scrape(url)
                durations.put(time.perf_counter() - started)
            except OSError:
                durations.put(None)
        while on.is_set() and time.perf_counter() < started + SCRAPE_INTERVAL_S:
            time.sleep(0.02)


class Scraper:
    """The scraper process and its switches."""

    def __init__(self, url: str) -> None:
        context = multiprocessing.get_context("spawn")  # a fork would copy grpc's state
        self.on, self.done, self.busy = context.Event(), context.Event(), context.Lock()
        self.durations: multiprocessing.Queue = context.Queue()
        self.process = context.Process(
            target=scraper, args=(url, self.on, self.busy, self.done, self.durations),
            daemon=True)
        self.process.start()

    def start(self) -> None:
        self.on.set()

    def stop(self) -> None:
        """Off, and back only once a scrape in progress has finished."""
        self.on.clear()
        with self.busy:
            pass

    def close(self) -> list[float | None]:
        """Ends the process; the duration of every scrape it made, in seconds (None: failed)."""
        self.stop()
        self.done.set()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        out = []
        while True:
            try:
                out.append(self.durations.get(timeout=0.1))
            except queue.Empty:
                return out


def round_calls(checks: int, rounds: int, r: int) -> int:
    """The calls of round r (the rounds share --checks as evenly as they can)."""
    return checks * (r + 1) // rounds - checks * r // rounds


def timed_checks(call: Callable[..., pb.CheckOrderResponse], orders: workload.Orders,
                 n: int) -> list[int]:
    clock, latencies = time.perf_counter_ns, [0] * n
    for i in range(n):
        order = orders.next()
        start = clock()
        reply = call(order, timeout=CALL_TIMEOUT_S)
        latencies[i] = clock() - start
        if not reply.allowed:
            raise BenchmarkError(f"CheckOrder denied: {reply}")
    return latencies


def latency(sidecar: SidecarProcess, url: str, checks: int,
            rounds: int) -> tuple[dict[str, list[int]], list[float | None]]:
    """Latencies (ns) of the quiet and the scraping rounds; the scrapes' durations (s, None
    for a failed one)."""
    settle = workload.Settler(sidecar.uds_target)
    channel = grpc.insecure_channel(sidecar.uds_target)
    call = pb_grpc.GuardServiceStub(channel).CheckOrder
    orders = workload.Orders()
    background = Scraper(url)
    out: dict[str, list[int]] = {"quiet": [], "scraping": []}
    try:
        settle()  # equity and the mark of workload's account
        for n in workload.chunks(WARMUP):
            timed_checks(call, orders, n)
            settle()
        for r in range(rounds):
            kind = "scraping" if (r + 1) // 2 % 2 else "quiet"  # Q S S Q Q S S Q ...
            alive(sidecar)
            if kind == "scraping":
                background.start()
            gc.collect()
            gc.disable()
            try:
                out[kind] += timed_checks(call, orders, round_calls(checks, rounds, r))
            finally:
                gc.enable()
                background.stop()
            settle()
    finally:
        durations = background.close()
        channel.close()
        settle.close()
    return out, durations


def percentiles(latencies_ns: list[int]) -> dict[str, float]:
    """Nearest-rank p50 / p99 / p99.9, in µs."""
    ordered, n = sorted(latencies_ns), len(latencies_ns)
    return {name: ordered[max(0, math.ceil(q * n) - 1)] / 1000
            for name, q in (("p50", 0.50), ("p99", 0.99), ("p99.9", 0.999))}


# --- the run -------------------------------------------------------------------------------


def log_problems(output: str) -> collections.Counter[str]:
    """The sidecar's WARNING and ERROR log lines (JSON, one per line), by event."""
    problems: collections.Counter[str] = collections.Counter()
    for line in output.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("WARNING", "ERROR", "CRITICAL"):
            scope = f" {entry['scope']}" if "scope" in entry else ""
            problems[f"{entry['level']} {str(entry.get('event', ''))[:60]}{scope}"] += 1
    return problems


def stop(sidecar: SidecarProcess) -> None:
    """SIGTERM (the graceful stop), SIGKILL if it does not exit in time."""
    process = sidecar.process
    if process is None:
        return
    if process.poll() is not None:
        print(f"  the sidecar had exited by itself, with {process.returncode}; its output:\n"
              + tail(sidecar), file=sys.stderr)
        return
    try:
        print(f"  sidecar stopped by SIGTERM: exit code {sidecar.terminate()}")
    except subprocess.TimeoutExpired:
        sidecar.kill()
        print("  the sidecar did not stop on SIGTERM: killed", file=sys.stderr)


def run(args: argparse.Namespace, workdir: Path) -> None:
    metrics_listen = f"127.0.0.1:{free_port()}"
    url = f"http://{metrics_listen}/metrics"
    longest_round = round_calls(args.checks, args.rounds, args.rounds - 1)
    sidecar = SidecarProcess(workdir, config(metrics_listen, longest_round))
    try:
        try:
            sidecar.start(timeout_s=30)
        except AssertionError as error:  # how SidecarProcess says it never served
            raise BenchmarkError(str(error)) from None
        pid = alive(sidecar)
        start_rss, scrape_at_start = memory_mib(pid)["VmRSS"], timed_scrape(url)
        print(f"sidecar pid {pid}, RSS at start {start_rss:.1f} MiB; one /metrics scrape at"
              f" start: {scrape_at_start}\n\n"
              f"{'ids sent':>10} {'RSS MiB':>9} {'ids/s':>8} {'srv CPU µs/id':>15}"
              f" {'metrics refused':>15} {'orders denied':>14} {'settle s':>9}")
        tally = FloodTally()
        flood_started = time.perf_counter()
        asyncio.run(flood(sidecar, args.ids, tally))
        flood_s = time.perf_counter() - flood_started
        print(f"\nflood: {args.ids:,} ids in {flood_s:.0f} s; ReportMetric refused"
              f" RESOURCE_EXHAUSTED {tally.refused:,} times; decisions:"
              f" {dict(tally.decisions.most_common())}")

        alive(sidecar)
        scrape_after = timed_scrape(url)
        print(f"one /metrics scrape after the flood: {scrape_after}")

        restricted = rearm_global(sidecar.uds_target)
        if restricted:
            print(f"GLOBAL was {restricted}; reset with force for the latency rounds")
        rounds, scrapes = latency(sidecar, url, args.checks, args.rounds)
        memory = memory_mib(alive(sidecar))
        figures = {kind: percentiles(latencies) for kind, latencies in rounds.items()}
        made = [s for s in scrapes if s is not None]
        print(f"\nCheckOrder, unary, one in flight, {args.checks} calls in {args.rounds}"
              f" rounds after {WARMUP} warm-up; during the scraping rounds {len(made)}"
              f" scrapes, {max(made, default=0):.3f} s the longest,"
              f" {len(scrapes) - len(made)} failed\n"
              f"{'rounds':<9} {'calls':>6} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9}")
        for kind, pct in figures.items():
            print(f"{kind:<9} {len(rounds[kind]):>6} {pct['p50']:>8.0f} {pct['p99']:>8.0f}"
                  f" {pct['p99.9']:>9.0f}")
        ratio = figures["scraping"]["p99"] / figures["quiet"]["p99"]
        after = tally.rss_mib
        print(f"\nsummary\n"
              f"  RSS: {start_rss:.1f} MiB at start, {after:.1f} after the flood,"
              f" {memory['VmRSS']:.1f} at the end, peak {memory['VmHWM']:.1f}\n"
              f"  growth: {(after - start_rss) / args.ids * 100_000:.1f} MiB per 100k ids"
              f" sent ({tally.refused:,} of them had their metric sample refused)\n"
              f"  /metrics: {scrape_at_start} at start; {scrape_after} after the flood\n"
              f"  CheckOrder p99 scraping / quiet: {ratio:.2f}"
              f" (budget <= {P99_RATIO_BUDGET}): {'OK' if ratio <= P99_RATIO_BUDGET else 'OVER'}")
    finally:
        stop(sidecar)
        problems = log_problems(sidecar.output())
        if problems:
            print(f"  sidecar log warnings/errors: {dict(problems.most_common(5))}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=1_000_000, help="distinct ids to flood")
    parser.add_argument("--checks", type=int, default=20_000,
                        help="measured CheckOrder calls, quiet and scraping rounds together")
    parser.add_argument("--rounds", type=int, default=10,
                        help="latency rounds, alternating quiet and scraping (ABBA)")
    args = parser.parse_args(argv)
    if args.ids < SAMPLES:
        parser.error(f"need --ids >= {SAMPLES}")
    if not 2 <= args.rounds <= args.checks:
        parser.error("need 2 <= --rounds <= --checks")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name in [k for k in os.environ if k.startswith("ESS_")]:
        del os.environ[name]  # the config file alone decides
    print(f"python {platform.python_version()}, grpcio {grpc.__version__}, {os.cpu_count()}"
          f" CPUs, load {os.getloadavg()[0]:.2f}; {args.ids:,} ids, {FLOOD_WORKERS} in flight")
    try:
        with tempfile.TemporaryDirectory(prefix="ess-flood-") as tmp:
            run(args, Path(tmp))
    except (BenchmarkError, grpc.RpcError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
