// The programs as an executor runs them: exit codes of ess-check.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const CHECK = fileURLToPath(new URL("../src/cli/check.js", import.meta.url));

function essCheck(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [CHECK, ...args], { encoding: "utf8", timeout: 30_000 });
}

// Review: help exited 0, ess-check's "allowed", even beside an order's flags, so
// `ess-check ... --help && send` sent the order unchecked.
test("ess-check: help alone exits 0, beside other arguments 64", () => {
  const order = ["--target", "127.0.0.1:1", "--account", "a", "--strategy", "s", "--symbol", "X",
    "--side", "sell", "--qty", "1", "--price", "1", "--coid", "o-1"];
  for (const help of ["-h", "--help"]) {
    const alone = essCheck(help);
    assert.equal(alone.status, 0, alone.stderr);
    assert.match(alone.stdout, /^usage: ess-check/);
    for (const args of [[...order, help], [help, ...order], [help, "--coid", "o-1"]]) {
      const beside = essCheck(...args);
      assert.equal(beside.status, 64, `${args.join(" ")}: ${beside.stdout}`);
      assert.match(beside.stderr.trim().split("\n").at(-1)!, /--help/);
    }
  }
});

// One grammar in every client's programs (review 52a): Number() took "0x10" as 16 and " 1" as
// 1, and a mistyped target was a check that failed closed, like an outage.
test("numbers and targets: one grammar, anything else a usage error naming the option", () => {
  const order = (target: string, qty: string): string[] => ["--target", target, "--account", "a",
    "--strategy", "s", "--symbol", "X", "--side", "sell", "--qty", qty, "--price", "1",
    "--coid", "o-1", "--deadline-ms", "1"];
  for (const qty of ["1_0", "0x10", "1d", "0x1p4", " 1", "1 ", "", "1e", ".", "-1", "Infinity"]) {
    const refused = essCheck(...order("127.0.0.1:1", qty));
    assert.equal(refused.status, 64, `--qty ${JSON.stringify(qty)}: ${refused.stdout}`);
    assert.match(refused.stderr.trim().split("\n").at(-1)!, /--qty/);
  }
  for (const target of ["127.0.0.1:abc", "127.0.0.1:99999", "127.0.0.1:0", "unix:", "unix:/x ",
    "127.0.0.1", " 127.0.0.1:50051", "http://h:1", "dns:///h:1", "h:1/x", "::1:50051"]) {
    const refused = essCheck(...order(target, "1"));
    assert.equal(refused.status, 64, `--target ${JSON.stringify(target)}: ${refused.stdout}`);
    assert.match(refused.stderr.trim().split("\n").at(-1)!, /--target/);
  }
  // Taken: nothing listens there, so the check fails closed (2), not a usage error (64).
  const good = [["127.0.0.1:1", "1"], ["localhost:1", "1.5"], ["[::1]:1", ".5"],
    ["unix:/nonexistent/x.sock", "1e3"], ["unix:relative.sock", "+2"], ["127.0.0.1:1", "2."]];
  for (const [target, qty] of good) {
    const taken = essCheck(...order(target!, qty!));
    assert.equal(taken.status, 2, `${target} ${qty}: ${taken.stderr}`);
  }
});
