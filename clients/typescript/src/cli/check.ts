#!/usr/bin/env node
// ess-check, the example every client ships: ask once whether an order may be sent.
//
//   ess-check --target HOST:PORT|unix:PATH [--token T] --account A --strategy S --symbol X
//             --side buy|sell --qty Q --price P --coid ID [--deadline-ms N]
//
// prints `ALLOWED <decision_id>` (exit 0) or `DENIED <REASON> <message>` (exit 2; a check
// that could not be decided is `DENIED CLIENT_FAIL_CLOSED <cause>: <why>`), and exits 64 on
// a usage error, -h / --help beside other arguments included (alone, it exits 0).

import { GuardClient } from "../client.js";
import { verdictLine } from "../verdict.js";
import {
  checkedTarget, client as made, deadline, nonBlank, out, parse, positive, quoted, run,
  UsageError,
} from "./common.js";

const USAGE =
  "usage: ess-check --target HOST:PORT|unix:PATH [--token T] --account A --strategy S" +
  " --symbol X --side buy|sell --qty Q --price P --coid ID [--deadline-ms N]\n" +
  "Ask an ESS sidecar whether an order may be sent; exit 0 allowed, 2 denied, 64 usage error.";

const OPTIONS = {
  target: { type: "string" },
  token: { type: "string" },
  account: { type: "string" },
  strategy: { type: "string" },
  symbol: { type: "string" },
  side: { type: "string" },
  qty: { type: "string" },
  price: { type: "string" },
  coid: { type: "string" },
  "deadline-ms": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const args = parse(argv, OPTIONS, []);
  if (args.help) {
    // Help exits 0, which is "allowed" here: beside other arguments it is a usage error, so
    // that `ess-check ... --help && send` sends nothing.
    if (argv.some((arg) => arg !== "-h" && arg !== "--help")) {
      throw new UsageError("--help given with other arguments: nothing was checked");
    }
    out(USAGE);
    return 0;
  }
  for (const name of ["target", "account", "strategy", "symbol", "side", "qty", "price", "coid"]) {
    if (args[name] === undefined) throw new UsageError(`the option --${name} is required`);
  }
  const side = args.side as string;
  if (side !== "buy" && side !== "sell") {
    throw new UsageError(`--side must be buy or sell, got ${quoted(side)}`);
  }
  const quantity = positive("qty", args.qty);
  const price = positive("price", args.price);
  const deadlineMs = deadline("deadline-ms", args["deadline-ms"], 5);
  const target = checkedTarget("target", args.target);
  const clientOrderId = nonBlank("coid", args.coid);
  const client = made(() => new GuardClient(target, {
    token: (args.token as string | undefined) || undefined,
    deadlineMs,
    logIntervalMs: 3_600_000,
    logger: { warn: () => {} }, // the printed line says it all
  }));
  try {
    await client.connect(1000); // connecting is not part of the check's deadline
    const verdict = await client.check({
      account: args.account as string,
      strategy: args.strategy as string,
      symbol: args.symbol as string,
      side,
      quantity,
      price,
      clientOrderId,
    });
    out(verdictLine(verdict));
    return verdict.allowed ? 0 : 2;
  } finally {
    client.close();
  }
}

run(USAGE, main);
