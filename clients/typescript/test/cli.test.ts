// The programs as an executor runs them: exit codes of ess-check.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import {
  deadline, isTarget, lines, parse, positive, quoted, UsageError, words,
} from "../src/cli/common.js";

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

// Review 52e: ess-bench took --help for an unknown option (exit 64).
test("ess-bench: help alone exits 0, beside other arguments 64", () => {
  const bench = fileURLToPath(new URL("../src/cli/bench.js", import.meta.url));
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [bench, ...args], { encoding: "utf8", timeout: 30_000 });
  for (const help of ["-h", "--help"]) {
    const alone = run(help);
    assert.equal(alone.status, 0, alone.stderr);
    assert.match(alone.stdout, /^usage: ess-bench/);
    const beside = run("--target", "127.0.0.1:1", help);
    assert.equal(beside.status, 64, beside.stdout);
    assert.match(beside.stderr.trim().split("\n").at(-1)!, /--help/);
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

// Review 52d: HOST a dotted quad, an RFC 1123 name or an IPv6 literal net.isIPv6 reads; PATH
// printable ASCII without URI syntax, and // only as ///abs.
test("targets: hosts are names or addresses, paths printable ASCII", () => {
  for (const good of ["localhost:1", "a.b-c.d:65535", "[::1]:50051", "[::ffff:1.2.3.4]:1",
    "127.0.0.1:50051", "0.0.0.0:1", "localhost.:1", `${"a".repeat(63)}:1`, "unix:ess.sock",
    "unix:///abs", "unix:/tmp/a b", "my-host.example.com:1", "0x.example:1", "1.example:1"]) {
    assert.ok(isTarget(good), good);
  }
  for (const bad of ["_:1", "-:1", "..:1", "a..b:1", "a-.b:1", `${"a".repeat(64)}:1`,
    "[1.2.3.4]:1", "[::1::]:1", "127.1:1", "2130706433:1", "256.1.1.1:1", "01.2.3.4:1",
    "1.2.3.4.:1", "unix:q?x.sock", "unix:a%2fb", "unix:a#b", "unix://host/x", "unix:////x",
    "unix://", "unix:/tmp/\u00e9",
    // Review 52e: a numeric last label (the URL standard's rule) unless a dotted quad.
    "0x7f000001:1", "0x7f.1:1", "0X7F.0.0.1:1", "1.2.3.0x4:1", "example.1:1", "a.0x:1",
    "a.1b:1", "localhost.1x:1", "1b:1"]) {
    assert.ok(!isTarget(bad), bad);
  }
});

// Review 52c: the grammar narrowed to names or [IPv6] without zones, at most 253 characters,
// and unix paths sun_path holds, without control or line-separator characters (grpc-js threw
// "Could not parse target name" on some, uncaught); deadlines of at least a microsecond.
test("targets: names or addresses, and paths a socket holds", () => {
  const path107 = `unix:/tmp/${"x".repeat(102)}`;
  for (const good of ["a.b-c.d:65535", "[::ffff:1.2.3.4]:1", path107]) {
    assert.ok(isTarget(good), good);
  }
  for (const bad of [`${"h".repeat(100_000)}:1`, `${"h".repeat(254)}:1`, `${path107}x`,
    `unix:/tmp/${"\u00e9".repeat(52)}`, "h\u00e9llo:1", "[fe80::1%lo]:1", "[]:1", "h:000001",
    "h:70000/", "\u2028localhost:1", "unix:/tmp/a\nb", "unix:/tmp/a\u2028b",
    "unix:/tmp/a\u0085b"]) {
    assert.ok(!isTarget(bad), bad.slice(0, 40));
  }
  assert.equal(quoted("a\n\u2028\u0085b"), '"a\\n\\u2028\\u0085b"');
  assert.deepEqual(words(" a\u2028b\u0085c\t\vd\f\re\n"), ["a\u2028b\u0085c", "d", "e"]);
});

// Review 52d: readline broke a line at a bare "\r" (two checks where the others refuse one).
test("a value with U+FFFD (argv's bytes that are not UTF-8) is refused, naming its option", () => {
  assert.throws(() => parse(["--coid", "o-\ufffd"], { coid: { type: "string" } }, []),
    /--coid is not valid UTF-8/);
});

test("ess-smoke lines split on \\n only", async () => {
  const got: string[] = [];
  const chunks = [Buffer.from("a\rb\r\nc"), Buffer.from([0xc3]),
    Buffer.from([0xa9, 0x0a, 0x64, 0x0d])];
  for await (const line of lines(chunks)) got.push(line);
  assert.deepEqual(got, ["a\rb", "c\u00e9", "d"]);
});

// Review 52e: U+FFFD in a coid checked an order under another id.
test("an ess-smoke line that is not UTF-8 is a usage error naming its number", async () => {
  const got: string[] = [];
  const chunks = [Buffer.from("a\nb-"), Buffer.from([0xff, 0x0a, 0x63, 0x0a])];
  await assert.rejects(async () => {
    for await (const line of lines(chunks)) got.push(line);
  }, /line 2 is not valid UTF-8/);
  assert.deepEqual(got, ["a"]);
});

// Review 52d: Go's ParseFloat read the first as far less than 1e13, and allowed it.
test("a number longer than 64 characters is refused", () => {
  for (const bad of [`1${"0".repeat(803)}e-790`, `1${"0".repeat(1000)}e-1000`,
    `1.${"0".repeat(63)}`]) {
    assert.throws(() => positive("qty", bad), /--qty is longer than 64 characters/);
  }
  assert.equal(positive("qty", `1.${"0".repeat(62)}`), 1);
});

test("deadlines: at least a microsecond; subnormal numbers are numbers", () => {
  for (const bad of ["5e-324", "1e-7", "0.0009", "9".repeat(100_000)]) {
    assert.throws(() => deadline("deadline-ms", bad), UsageError, bad.slice(0, 40));
  }
  assert.equal(deadline("deadline-ms", "0.001"), 0.001);
  assert.equal(positive("qty", "5e-324"), 5e-324);
  const refused = essCheck("--target", "unix:/tmp/a\nb", "--account", "a", "--strategy", "s",
    "--symbol", "X", "--side", "sell", "--qty", "1\n2", "--price", "1", "--coid", "o-1");
  assert.equal(refused.status, 64);
  assert.match(refused.stderr.trim().split("\n").at(-1)!, /--qty/);
});

// Review 54e: a token the library refuses was grpc-js's error, printing the secret, and
// ess-check blamed --target; it is now a usage error naming --token. A CRLF file's "tok\r"
// is "tok" (no sidecar there: denied, 2).
test("ess-check: a refused token is a usage error naming --token, never printing it", () => {
  const order = ["--target", "127.0.0.1:1", "--account", "a", "--strategy", "s", "--symbol", "X",
    "--side", "buy", "--qty", "1", "--price", "1", "--coid", "c-1", "--token"];
  const refused = essCheck(...order, "zq\r9");
  assert.equal(refused.status, 64, refused.stderr);
  assert.match(refused.stderr.trim().split("\n").at(-1)!, /--token: .*byte 2 .*0x0d/);
  assert.ok(!refused.stderr.includes("zq"), refused.stderr);
  const taken = essCheck(...order, "tok\r\n");
  assert.equal(taken.status, 2, taken.stderr);
});
