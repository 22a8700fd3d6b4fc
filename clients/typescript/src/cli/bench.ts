#!/usr/bin/env node
// ess-bench: the latency of the library's check, as an executor sees it, against a live
// sidecar. One client, one stream, --inflight checks at a time; prints
//   p50_us=.. p99_us=.. checks_per_s=.. (then p999_us, max_us, client_cpu_us: this
// process's CPU per check, and the denials)
// Percentiles are nearest-rank over the measured checks (after --warmup more).
//
//   ess-bench --target unix:/tmp/ess.sock --checks 10000 --inflight 8
//
// The orders are benchmarks/workload.py's: ACC-1 / STRAT-1 / BTC-USD, buy 1 at a price
// cycling within 1 % of 100, each with its own client_order_id (made up by the library).
// A sidecar allows them all with `[limits] exposure_enabled = false`,
// `duplicate_identical_orders = 0`, `max_orders_per_second = 0` and both working-order
// caps at 0.

import { GuardClient } from "../client.js";
import type { Order } from "../convert.js";
import type { Verdict } from "../verdict.js";
import {
  checkedTarget, client as made, count, deadline, out, parse, run, UsageError,
} from "./common.js";

const USAGE =
  "usage: ess-bench --target unix:PATH|HOST:PORT [--token T] [--checks 10000] [--inflight 1]" +
  " [--warmup 1000] [--deadline-ms 1000] [--api stream|unary]";

const OPTIONS = {
  target: { type: "string" },
  token: { type: "string" },
  checks: { type: "string" },
  inflight: { type: "string" },
  warmup: { type: "string" },
  "deadline-ms": { type: "string" },
  api: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

function percentile(sorted: Float64Array, q: number): number {
  const index = Math.max(0, Math.ceil(q * sorted.length) - 1);
  return sorted[index]!;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  // Review 52e: -h / --help alone prints the usage and exits 0, as ess-check and the other
  // clients' ess-bench do; beside other arguments it is a usage error, as in ess-check.
  if (argv.length > 0 && argv.every((arg) => arg === "-h" || arg === "--help")) {
    out(USAGE);
    return 0;
  }
  const args = parse(argv, OPTIONS, ["target"]);
  if (args.help) throw new UsageError("--help given with other arguments: nothing was run");
  const checks = count("checks", args.checks, 10_000);
  const inflight = count("inflight", args.inflight, 1);
  const warmup = args.warmup === "0" ? 0 : count("warmup", args.warmup, 1000);
  const deadlineMs = deadline("deadline-ms", args["deadline-ms"], 1000);
  const target = checkedTarget("target", args.target);
  const api = (args.api as string | undefined) ?? "stream";
  if (api !== "stream" && api !== "unary") throw new UsageError(`--api must be stream or unary`);
  const client = made(() => new GuardClient(target, {
    token: (args.token as string | undefined) || undefined,
    deadlineMs,
  }));
  let n = 0;
  const order = (): Order => {
    n += 1;
    return {
      account: "ACC-1",
      strategy: "STRAT-1",
      symbol: "BTC-USD",
      side: "buy",
      quantity: 1,
      price: 100 * (1 + (n % 10_000) * 1e-6),
    };
  };
  const ask = (o: Order): Promise<Verdict> =>
    api === "stream" ? client.check(o) : client.checkUnary(o);
  const reasons = new Map<string, number>();
  let notAllowed = 0; // warm-up checks included: any is exit 1, as in every client

  async function segment(total: number, latencies: Float64Array | null): Promise<void> {
    let issued = 0;
    const worker = async (): Promise<void> => {
      while (issued < total) {
        const index = issued++;
        const next = order();
        const started = performance.now();
        const verdict = await ask(next);
        const elapsed = performance.now() - started;
        if (!verdict.allowed) notAllowed += 1;
        if (latencies !== null) {
          latencies[index] = elapsed * 1000;
          if (!verdict.allowed) {
            const key = verdict.failure ? `${verdict.reason}/${verdict.failure}` : verdict.reason;
            reasons.set(key, (reasons.get(key) ?? 0) + 1);
          }
        }
      }
    };
    await Promise.all(Array.from({ length: inflight }, worker));
  }

  try {
    if (!(await client.connect(5000))) throw new Error(`no sidecar at ${target}`);
    if (warmup > 0) await segment(warmup, null);
    const latencies = new Float64Array(checks);
    const cpu = process.cpuUsage();
    const started = performance.now();
    await segment(checks, latencies);
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    latencies.sort();
    const denied = [...reasons.entries()].map(([k, v]) => `${k}:${v}`).join(",");
    out(
      `p50_us=${percentile(latencies, 0.5).toFixed(0)} p99_us=${percentile(latencies, 0.99).toFixed(0)}` +
        ` checks_per_s=${(checks / seconds).toFixed(0)}` +
        ` p999_us=${percentile(latencies, 0.999).toFixed(0)} max_us=${latencies[checks - 1]!.toFixed(0)}` +
        ` client_cpu_us=${((used.user + used.system) / checks).toFixed(0)}` +
        ` inflight=${inflight} checks=${checks} api=${api} denied=${denied || "0"}`,
    );
    if (notAllowed > 0) process.stderr.write(`${notAllowed} checks were not allowed\n`);
    return notAllowed > 0 ? 1 : 0; // review 52d: a run with denials is no benchmark

  } finally {
    client.close();
  }
}

run(USAGE, main);
