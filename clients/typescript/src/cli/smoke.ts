#!/usr/bin/env node
// ess-smoke, the driver of the cross-language smoke test (tests/clients/smoke.py): ONE
// long-lived client, connected before stdin is read; for each line
//   check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]
// it prints `<microseconds the library's check took> <the ess-check line>`. Exit 0 at EOF.

import { status as Status } from "@grpc/grpc-js";

import { GuardClient } from "../client.js";
import { State } from "../gen/ess/v1/guard_pb.js";
import { verdictLine } from "../verdict.js";
import {
  checkedTarget, client as made, deadline, lines, out, parse, positive, quoted, run,
  UsageError, words as split,
} from "./common.js";

const USAGE = "usage: ess-smoke --target HOST:PORT|unix:PATH [--token T] [--deadline-ms N]";

const OPTIONS = {
  target: { type: "string" },
  token: { type: "string" },
  "deadline-ms": { type: "string" },
} as const;

/**
 * `trigger SCOPE MODE CODE DIRECTIVES REASON_HEX` (DIRECTIVES comma-separated; "-" for the
 * default, none or an empty reason; a number is sent as a number; REASON_HEX the reason's
 * UTF-16LE code units, lone surrogates and all) through the library's trigger: `STATE
 * VERSION`, or `ERROR CODE` / `RAISED WHAT` when it did not resolve.
 */
async function trigger(client: GuardClient, given: string[]): Promise<string> {
  const words = [...given, "-", "-", "-", "-", "-"].slice(0, 5).map((w) => (w === "-" ? "" : w));
  const [scope, mode, code, directives, reasonHex] = words as [string, string, string, string, string];
  const value = (w: string): string | number => (/^-?\d+$/.test(w) ? Number(w) : w);
  try {
    const answer = await client.trigger(scope, Buffer.from(reasonHex, "hex").toString("utf16le"), {
      ...(mode === "" ? {} : { mode: value(mode) }),
      ...(code === "" ? {} : { reasonCode: value(code) }),
      directives: directives === "" ? [] : directives.split(",").map(value),
    });
    return `${State[answer.state]} ${answer.stateVersion}`;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === "number" ? `ERROR ${Status[code]}` : `RAISED ${(error as Error).name}`;
  }
}

async function main(): Promise<number> {
  const args = parse(process.argv.slice(2), OPTIONS, ["target"]);
  const deadlineMs = deadline("deadline-ms", args["deadline-ms"], 5);
  const target = checkedTarget("target", args.target);
  const client = made(() => new GuardClient(target, {
    token: (args.token as string | undefined) || undefined,
    deadlineMs,
  }));
  try {
    await client.connect(5000); // as an executor does when it starts
    for await (const text of lines(process.stdin)) {
      const words = split(text);
      if (words.length === 0) continue;
      if (words[0] === "trigger") {
        out(await trigger(client, words.slice(1)));
        continue;
      }
      if (words[0] !== "check" || words.length < 8 || words.length > 9) {
        throw new UsageError(`bad line: ${quoted(text)}`);
      }
      const [, account, strategy, symbol, side, qty, price, coid, ms] = words as string[];
      const deadlineMs = ms === undefined ? undefined : deadline("DEADLINE_MS", ms);
      const started = performance.now();
      const verdict = await client.check(
        {
          account: account!,
          strategy: strategy!,
          symbol: symbol!,
          side: side!,
          quantity: positive("QTY", qty),
          price: positive("PRICE", price),
          clientOrderId: coid!,
        },
        { deadlineMs },
      );
      const elapsedUs = Math.round((performance.now() - started) * 1000);
      out(`${elapsedUs} ${verdictLine(verdict)}`);
    }
    return 0;
  } finally {
    client.close();
  }
}

run(USAGE, main);
