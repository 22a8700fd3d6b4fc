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
