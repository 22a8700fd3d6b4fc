// The pure parts: answers to verdicts, the printed line, enum and scope conversion, and
// the failure policy's counting and rate-limited logging.

import assert from "node:assert/strict";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";

import {
  CLIENT_FAIL_CLOSED,
  failed,
  FailurePolicy,
  pb,
  toEnum,
  toScope,
  verdictFromAnswer,
  verdictLine,
} from "../src/index.js";
import { answer } from "./fake.js";

test("every known reason with a consistent allowed is trusted", () => {
  for (const value of pb.DecisionReasonSchema.values) {
    if (value.number === 0) continue;
    const allowed = value.number === pb.DecisionReason.ALLOWED;
    const verdict = verdictFromAnswer(answer(1n, { allowed, reason: value.number, decisionId: "d" }));
    assert.equal(verdict.failure, null, value.name);
    assert.equal(verdict.allowed, allowed);
    assert.equal(verdict.reason, value.name.replace("DECISION_REASON_", ""));
    const contradicting = verdictFromAnswer(answer(1n, { allowed: !allowed, reason: value.number }));
    assert.equal(contradicting.failure, "malformed", value.name);
    assert.equal(contradicting.allowed, false);
  }
});

test("the ess-check line", () => {
  const allowed = verdictFromAnswer(answer(1n, { allowed: true, reason: 1, decisionId: "abc-1" }));
  assert.equal(verdictLine(allowed), "ALLOWED abc-1");
  const tripped = verdictFromAnswer(answer(1n, { reason: 2, message: "STRATEGY:momo is TRIPPED" }));
  assert.equal(verdictLine(tripped), "DENIED SCOPE_TRIPPED STRATEGY:momo is TRIPPED");
  assert.equal(verdictLine(verdictFromAnswer(answer(1n, { reason: 8 }))), "DENIED ORDER_RATE");
  assert.equal(
    verdictLine(failed("deadline", "no answer within 5 ms")),
    `DENIED ${CLIENT_FAIL_CLOSED} deadline: no answer within 5 ms`,
  );
  // A trip reason is the caller's text: whatever it holds, the denial stays one line.
  const forged = verdictFromAnswer(answer(1n, {
    reason: 2, message: "halt\nALLOWED d-9\r\n\u2028ALLOWED d-8\u0085\u001b[2K\tend",
  }));
  assert.equal(verdictLine(forged), "DENIED SCOPE_TRIPPED halt ALLOWED d-9 ALLOWED d-8 [2K end");
});

test("a request error is a fail-closed denial naming the field", () => {
  const verdict = verdictFromAnswer(create(pb.CheckOrderStreamResponseSchema, {
    requestId: 3n,
    result: { case: "error", value: { code: 3, field: "order.price", message: "bad" } },
  }));
  assert.deepEqual(
    [verdict.allowed, verdict.reason, verdict.failure, verdict.field],
    [false, CLIENT_FAIL_CLOSED, "request_error", "order.price"],
  );
});

test("enums by name or number, scopes as KIND:id", () => {
  assert.equal(toEnum(pb.SideSchema, "buy"), pb.Side.BUY);
  assert.equal(toEnum(pb.SideSchema, "SIDE_SELL"), pb.Side.SELL);
  assert.equal(toEnum(pb.SideSchema, 2), 2);
  assert.throws(() => toEnum(pb.SideSchema, "up"), TypeError);
  for (const notASide of [1.5, Number.NaN, 2 ** 40, -1, 7]) {
    assert.throws(() => toEnum(pb.SideSchema, notASide), TypeError, String(notASide));
  }
  assert.deepEqual(
    [toScope("STRATEGY:momo").kind, toScope("STRATEGY:momo").id],
    [pb.ScopeKind.STRATEGY, "momo"],
  );
  assert.equal(toScope("GLOBAL").kind, pb.ScopeKind.GLOBAL);
  assert.equal(toScope("account:a:b").id, "a:b");
  // Review 53a: Unicode's upper case of the long s is S; the sidecar and the other clients
  // read a kind in ASCII letters only, with nothing around it.
  const texts = ["\u017fymbol:aapl", "\u017ftrategy:momo", "SCOPE_KIND_\u017fYMBOL:x", "Strategy :momo"];
  for (const text of texts) {
    assert.throws(() => toScope(text), TypeError, text);
  }
  assert.throws(() => toEnum(pb.SideSchema, "\u017fell"), TypeError);
});

test("the failure policy counts every failure and logs each cause once per interval", () => {
  let now = 0;
  const lines: string[] = [];
  const policy = new FailurePolicy({ warn: (m) => lines.push(m) }, 1000, () => now);
  for (let i = 0; i < 3; i++) policy.apply(failed("deadline", "late"));
  policy.apply(failed("unavailable", "down"));
  assert.equal(policy.counts.deadline, 3);
  assert.equal(policy.counts.unavailable, 1);
  assert.equal(lines.length, 2);
  now = 1001;
  const verdict = policy.apply({ ...failed("deadline", "late"), allowed: true });
  assert.equal(verdict.allowed, false, "a failure is never allowed");
  assert.equal(lines.length, 3);
  assert.match(lines[2]!, /\[2 more since the last log\]/);
});

// Review 54b: a Verdict is an object, and every object is truthy in JavaScript: `if (verdict)`
// or `if (await client.check(o))` sends a denied order. Only `verdict.allowed` says yes.
test("a denial is a truthy object: obey verdict.allowed, never the verdict", () => {
  const denied = failed("deadline", "no answer within 5 ms");
  assert.ok(denied, "JavaScript takes any object for true");
  assert.equal(denied.allowed, false);
  const tripped = verdictFromAnswer(answer(1n, { allowed: false,
    reason: pb.DecisionReason.SCOPE_TRIPPED }));
  assert.ok(tripped);
  assert.equal(tripped.allowed, false);
});
