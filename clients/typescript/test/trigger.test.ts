// trigger never refuses a stop for what comes with it (the e2e test is
// tests/clients/test_typescript_client.py, against a real sidecar).

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { GuardClient, MAX_REASON_CHARS, pb, triggerRequest } from "../src/index.js";

describe("trigger", () => {
  test("unknown names halt, are user-initiated or left out, noted in the reason", () => {
    const request = triggerRequest("STRATEGY:momo", "why", {
      mode: "PANIC",
      reasonCode: "RISK",
      directives: ["CANCEL_ALL", "cancel-open-orders", 1.5, true as unknown as number],
    });
    assert.equal(request.mode, pb.TriggerMode.HALT);
    assert.equal(request.reasonCode, pb.TriggerReason.USER_INITIATED);
    assert.deepEqual(request.directives, [pb.Directive.CANCEL_OPEN_ORDERS]);
    assert.equal(
      request.reason,
      "why (mode PANIC unknown: halted; reason_code RISK unknown: user-initiated;" +
        " directive CANCEL_ALL unknown: left out; directive 1.5 unknown: left out;" +
        " directive true unknown: left out)",
    );
  });

  test("what cannot be read is left out, and the stop goes on (review 49e)", () => {
    const throwing = {
      get mode(): string {
        throw new Error("getter");
      },
      directives: new Set(["cancel-open-orders"]),
    };
    const request = triggerRequest("GLOBAL", "why", throwing);
    assert.equal(request.mode, pb.TriggerMode.HALT);
    assert.deepEqual(request.directives, [pb.Directive.CANCEL_OPEN_ORDERS]);
    assert.match(request.reason, /mode could not be read/);
    function* failing(): Generator<string> {
      yield "CANCEL_OPEN_ORDERS";
      throw new Error("mid-way");
    }
    const partial = triggerRequest("GLOBAL", "", { directives: failing() });
    assert.deepEqual(partial.directives, [pb.Directive.CANCEL_OPEN_ORDERS]);
    assert.match(partial.reason, /directives could not all be read/);
    function* endless(): Generator<string> {
      for (;;) yield "CANCEL_OPEN_ORDERS";
    }
    const bounded = triggerRequest("GLOBAL", "", { directives: endless() });
    assert.equal(bounded.directives.length, 64);
    const proxy = new Proxy({}, { get: () => { throw new Error("proxy"); } });
    assert.equal(triggerRequest("GLOBAL", "", proxy).mode, pb.TriggerMode.HALT);
  });

  test("an int32 number passes through, even one this version does not know", () => {
    const request = triggerRequest("GLOBAL", "", { mode: 7, reasonCode: 2 ** 31 - 1, directives: [42] });
    assert.deepEqual([request.mode, request.reasonCode, request.directives], [7, 2 ** 31 - 1, [42]]);
    const out = triggerRequest("GLOBAL", "", { mode: 2 ** 40 });
    assert.equal(out.mode, pb.TriggerMode.HALT);
    assert.match(out.reason, /mode 1099511627776 unknown: halted/);
  });

  test("lone surrogates become U+FFFD; a huge reason is cut, its notes kept", () => {
    assert.equal(triggerRequest("GLOBAL", "a\uD800b\uDC00", {}).reason, "a\uFFFDb\uFFFD");
    assert.equal(triggerRequest("GLOBAL", "ok \u{1F600}", {}).reason, "ok \u{1F600}");
    const huge = triggerRequest("GLOBAL", "\u{1F600}".repeat(3 << 20), { mode: "PANIC" }).reason;
    assert.ok(Array.from(huge).length <= MAX_REASON_CHARS, String(huge.length));
    assert.ok(huge.startsWith("\u{1F600}"));
    assert.ok(huge.endsWith("(mode PANIC unknown: halted)"), huge.slice(-80));
    assert.doesNotMatch(huge, /[\uD800-\uDBFF](?![\uDC00-\uDFFF])/);
  });

  test("a scope it cannot read rejects the promise, never throws synchronously", async () => {
    const client = new GuardClient("127.0.0.1:1");
    try {
      let promise: Promise<unknown> | undefined;
      assert.doesNotThrow(() => {
        promise = client.trigger("NOPE:x", "why", { mode: "PANIC" });
      });
      await assert.rejects(promise!);
    } finally {
      client.close();
    }
  });
});
